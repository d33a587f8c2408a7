"""A handler module that raises while being imported."""

raise RuntimeError("boom while importing")
