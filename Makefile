# `make test` runs the suite once per Keras backend (two pytest workers: the machines have two
# cores, and many tests wait on compilation or subprocesses; `worksteal` hands an idle worker
# tests queued on the busy one, since a few take minutes) and fails if any backend fails; each
# backend's run ends with its three slowest tests. `make test-fast` leaves out the `integration`
# tests (subprocesses, notebooks).
PYTHON ?= python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test test-fast test-slow pretrain

test:
	@status=0; for backend in $(BACKENDS); do \
		echo "===== KERAS_BACKEND=$$backend ====="; \
		KERAS_BACKEND=$$backend $(PYTHON) -m pytest -q -n 2 --dist worksteal --durations=3 $(PYTEST_ARGS) || status=1; \
	done; exit $$status

test-fast:
	@$(MAKE) test PYTEST_ARGS="-m 'not slow and not integration'"

test-slow:
	@$(MAKE) test PYTEST_ARGS="-m slow"

pretrain:
	keras-gpt1 pretrain
