"""The handlers of the shipped queues, and the helpers they share.

webhook-processing -> message-processing -> notifications -> email-sending, and analytics:
each handler is ``async def handle(data, job)``; follow-up jobs are added with ``job.add_job``
under ids derived from the adding job, so a retried run adds nothing twice. docs/queues.md
describes the payloads, the settings (environment variables) and the Redis keys.
"""
