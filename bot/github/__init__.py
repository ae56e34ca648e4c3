"""Every GitHub call a job makes: the client, tokens, reads, the tracking comment, every write."""
