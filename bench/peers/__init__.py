"""cortexflow against the other job queues on one server: ``make bench-peers``.

``python -m bench.peers`` (see bench/README.md). Each system is an adapter in ``adapters/`` (how to
add jobs, how to start its worker, where one job's key is) and a worker-side app in ``apps/``
whose no-op handler counts with ``tally.Tally``; BullMQ's is ``bullmq/bench.mjs``.
"""
