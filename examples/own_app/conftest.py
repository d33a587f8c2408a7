"""`python -m pytest` in this folder: cortexflow's plugin gives each test a private server."""

pytest_plugins = ["cortexflow.testing"]
