"""The handlers of the five queues of the original service (minimal until the real ones land)."""
