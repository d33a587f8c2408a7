"""Checks a JSON Schema cannot express (docs/config.md): durations, handlers, payload schemas,
dead letters, backoff bounds, the processes queues share (config/groups.py), group keys
(groupcheck.py). They run on the raw data even when the schema found problems elsewhere, so one
`validate` lists everything; each check looks only at values of the right shape and leaves the
rest to the schema's diagnostics.