PY ?= python

.PHONY: test lint check bench

test:
	$(PY) -m pytest -q

lint:
	ruff check cortexflow tests bench examples
	ruff format --check cortexflow tests bench examples
	mypy

check: lint test

bench:
	$(PY) bench/engine.py
