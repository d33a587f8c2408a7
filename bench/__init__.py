"""Benchmarks of cortexflow: never part of the test suite (speed stays out of tests).

- ``bench/engine.py`` (``make bench``): cortexflow against plain taskiq-redis, same server;
- ``bench/peers/`` (``make bench-peers``): cortexflow against the other job queues;
- ``bench/scaling.py`` (``make bench-scaling``): worker processes and Cluster primaries added.

Modules: ``procs`` (the server and the worker processes), ``measure`` (rates, CPU, pickups),
``systems/`` (one module per system under test, one interface), ``report`` (medians, Markdown,
the machine), ``profile`` (py-spy on the cortexflow worker).
"""
