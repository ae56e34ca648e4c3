"""The web process: a delivery's raw bytes in, a queued task and a 202 out; no agent code."""
