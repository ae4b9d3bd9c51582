# `make test` runs the suite once per Keras backend (two pytest workers: the machines have two
# cores, and many tests wait on compilation or subprocesses; `worksteal` hands an idle worker
# tests queued on the busy one, since a few take minutes) and fails if any backend fails; each
# backend's run ends with its three slowest tests. Tests marked `once` (backend-independent) run
# in one backend's run (tests/conftest.py). The notebooks run in `make test-notebooks` and in CI's
# Colab-runtime environment, the runtime they are written for; the benchmark harness's end-to-end
# runs in `make test-bench`. `make test-fast` also leaves out the other `integration` tests
# (subprocesses). `make lint` is ruff's lint and format check, which CI runs first.
PYTHON ?= python
BACKENDS ?= tensorflow jax torch
MARKERS ?= not slow and not notebook and not bench
PYTEST_ARGS ?=

.PHONY: lint test test-fast test-slow test-notebooks test-bench pretrain

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test:
	@status=0; for backend in $(BACKENDS); do \
		echo "===== KERAS_BACKEND=$$backend ====="; \
		KERAS_BACKEND=$$backend $(PYTHON) -m pytest -q -n 2 --dist worksteal --durations=3 -m "$(MARKERS)" $(PYTEST_ARGS) || status=1; \
	done; exit $$status

test-fast:
	@$(MAKE) test MARKERS="not slow and not integration"

test-slow:
	@$(MAKE) test MARKERS="slow"

test-notebooks:
	@$(MAKE) test MARKERS="notebook"

test-bench:
	@$(MAKE) test MARKERS="bench"

pretrain:
	keras-gpt1 pretrain
