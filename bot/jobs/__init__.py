"""The worker process: arq wiring and one module per job kind."""
