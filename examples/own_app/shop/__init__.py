"""A user's own app: its handlers live in this package, beside queues.yaml."""
