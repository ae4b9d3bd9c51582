# `make test` runs the suite once per Keras backend and fails if any backend fails.
PYTHON ?= python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test test-slow pretrain

test:
	@status=0; for backend in $(BACKENDS); do \
		echo "===== KERAS_BACKEND=$$backend ====="; \
		KERAS_BACKEND=$$backend $(PYTHON) -m pytest -q $(PYTEST_ARGS) || status=1; \
	done; exit $$status

test-slow:
	@$(MAKE) test PYTEST_ARGS="-m slow"

pretrain:
	keras-gpt1 pretrain
