# The two commands of the README: `make run` and `make test`.
# Both create .venv from requirements.lock when it is missing or older than the lock.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
ARGS ?=

.PHONY: run test test-fast lock bench clean

$(VENV)/.synced: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: $(VENV)/.synced
	$(BIN)/lockgate run $(ARGS)

test: $(VENV)/.synced
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(VENV)/.synced
	$(BIN)/python -m pytest -m "not integration and not e2e" $(ARGS)

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf $(VENV) .lockgate
