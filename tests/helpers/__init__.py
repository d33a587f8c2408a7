"""What the tests share (fixtures are in the conftest.py files):

- poll: wait for a condition with a deadline (``wait_for``, ``wait_for_async``);
- project: write a project folder (queues.yaml and the files beside it), the test handlers;
- procs: run the CLI, start and stop long-running commands (`up`, workers, apps), signals;
- jobs: the engine and in-process workers, and sync wrappers over them;
- services: a scriptable SMTP server, an HTTP client, webhook bodies;
- dashboard: the dashboard tests' project, the app on a real uvicorn, workers in a thread.
"""
