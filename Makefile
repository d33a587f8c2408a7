PY ?= python

.PHONY: test unit test-all lint check bench bench-peers bench-peers-deps bench-e2e bench-scaling

# Parallel workers: the tests mostly wait (on processes, signals, leases), so twice the cores of
# a 2-core machine keep it busy; each xdist worker starts its own Valkey.
WORKERS ?= 4

# The fast tier: every test but the slow ones (over ~5 s), in parallel.
test:
	$(PY) -m pytest -q -n $(WORKERS) -m "not slow"

# Seconds: pure functions and the architecture test, no server.
unit:
	$(PY) -m pytest -q tests/unit

# Every test, slow ones included, in parallel: what `make check` and CI run.
test-all:
	$(PY) -m pytest -q -n $(WORKERS)

lint:
	ruff check cortexflow tests bench examples
	ruff format --check cortexflow tests bench examples
	mypy

check: lint test-all

# cortexflow vs taskiq-redis (bench/engine.py); JOBS=2000 or ARGS=--quick for a shorter run
bench:
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/engine.py $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

# processing rate with 1/2/4 worker processes on one server, and 6 queues on 1 vs 3 Cluster
# primaries (bench/scaling.py); JOBS=2000 RUNS=1 for a quick check
bench-scaling:
	$(PY) bench/scaling.py $(if $(JOBS),--jobs $(JOBS)) $(if $(RUNS),--runs $(RUNS)) $(ARGS)

# the peer benchmark: every installed system, one server, interleaved runs (bench/peers/)
bench-peers: bench-peers-deps
	$(PY) -m bench.peers $(if $(JOBS),--jobs $(JOBS)) $(if $(RUNS),--runs $(RUNS)) $(ARGS)

# the peers' packages: the `bench` extra; arq in its own venv (it pins redis-py < 6);
# BullMQ with npm into bench/peers/bullmq/node_modules when node and npm are there
bench-peers-deps:
	$(PY) -m pip install -q -e '.[bench]'
	test -x bench/peers/.venv-arq/bin/arq || \
		( $(PY) -m venv bench/peers/.venv-arq && \
		  bench/peers/.venv-arq/bin/pip install -q 'arq==0.28.*' uvloop )
	if command -v node >/dev/null && command -v npm >/dev/null && \
		[ ! -d bench/peers/bullmq/node_modules/ioredis ]; then \
		cd bench/peers/bullmq && npm install --no-audit --no-fund --loglevel=error; fi

# the shipped queues under `cortexflow up`, webhook -> message -> email on a local SMTP server
bench-e2e:
	$(PY) -m bench.e2e $(ARGS)
