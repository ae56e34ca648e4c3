"""One record per run, whatever its kind: store, outcome, lifecycle, stop, callback, API, page."""
