# The two commands of the README: `make run` and `make test`.
# Both create .venv from requirements.lock when it is missing or older than the lock.
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on some
# CI machines) every process would otherwise compile ~1,000 modules at start.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
ARGS ?=

.PHONY: run test test-fast mutation lock bench clean

$(VENV)/.synced: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: $(VENV)/.synced
	$(BIN)/lockgate run $(ARGS)

# Two workers, one per core (three took 13:50 against two's 13:00 here).
# tests/conftest.py keeps each module, and the tests of the session's shared
# champions, on one worker.
test: $(VENV)/.synced
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=25 $(ARGS)

# Minutes, not the suite: no pipeline runs, no servers.
test-fast: $(VENV)/.synced
	$(BIN)/python -m pytest -m "unit or data" $(ARGS)

# Mutation testing of the gate's rule and its statistics ([tool.mutmut] in
# pyproject.toml): mutmut copies lockgate/ into mutants/, mutates gate.py and
# stats.py there and runs their unit tests on each mutant. Starts clean, so
# the score is never read from an older run's cache.
mutation: $(VENV)/.synced
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -c 'import json; print("mutation score: {killed}/{total} killed, {survived} survived, {timeout} timed out, {no_tests} not tested".format(**json.load(open("mutants/mutmut-cicd-stats.json"))))'

# requirements.lock: everything (the pipeline, the tests, the service).
# requirements-serve*.lock: what a Bento installs, pinned to the same versions.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28
EXTRA = $(BIN)/python -c 'import sys, tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"][sys.argv[1]]))'
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra serve $(LOCK_FLAGS) -o requirements.lock
	$(EXTRA) serve | $(BIN)/uv pip compile - -c requirements.lock $(LOCK_FLAGS) --no-header -o requirements-serve.lock
	{ $(EXTRA) serve; $(EXTRA) serve-keras; } | $(BIN)/uv pip compile - -c requirements.lock $(LOCK_FLAGS) --no-header -o requirements-serve-keras.lock

clean:
	rm -rf $(VENV) .lockgate tests/browser/node_modules tests/browser/.chromium
