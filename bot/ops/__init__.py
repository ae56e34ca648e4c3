"""Operator tools: the CLI, setup, doctor, replay, the private Redis; nothing imports them."""
