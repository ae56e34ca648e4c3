"""What crosses Redis between the web and worker processes: task models, the JSON codec, enqueue."""
