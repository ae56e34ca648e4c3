"""A repository's `.openhands/config.yml` without GitHub: schema, cron, the last valid copy."""
