PY ?= python

.PHONY: test lint check bench bench-peers bench-peers-deps bench-e2e bench-scaling

test:
	$(PY) -m pytest -q

lint:
	ruff check cortexflow tests bench examples
	ruff format --check cortexflow tests bench examples
	mypy

check: lint test

# cortexflow vs taskiq-redis (bench/engine.py); JOBS=2000 or ARGS=--quick for a shorter run
bench:
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
