"""The end-to-end case a user has: the shipped queues under ``cortexflow up`` with signed WhatsApp
webhooks whose replies go out by email to a local SMTP server (``make bench-e2e``).

``python -m bench.e2e``: ``mailbox`` (the SMTP server, arrival time per recipient), ``webhooks``
(the payloads), ``run`` (the project, `up`, the two phases, the report).
"""
