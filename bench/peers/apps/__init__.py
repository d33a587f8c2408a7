"""Worker-side apps: what each system's worker command imports. A module-level app object is how
these frameworks find their tasks; each handler is a no-op that calls ``Tally.done()``."""
