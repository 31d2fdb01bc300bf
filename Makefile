# Custody: `make run` starts the local suite, `make test` runs every test. Both install what they need.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := $(or $(CUSTODY_CHROMIUM),/usr/bin/chromium)

.PHONY: run test install chromium proto lint format lock clean validate-deploy bench bench-smoke peers

run: $(STAMP)
	$(BIN)/custody up

# pytest runs on every core (pytest-xdist; -n 0 runs in one process): no test shares a port, a directory or a
# database schema with another, and worksteal keeps both workers busy to the end despite the long tests.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist worksteal

# tests/deploy (what validate-deploy runs alone) is part of the one parallel run rather than a serial step before it.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(XDIST)

install: $(STAMP)

# The browser tests' Chromium (Debian's package; installing it needs root or sudo): a real file target, so apt runs
# only when the binary is missing. CUSTODY_CHROMIUM names another Chromium instead (then nothing is installed).
chromium: $(CHROMIUM)

$(CHROMIUM):
	scripts/install-chromium.sh

# The benchmark suite, side by side with LiteLLM, MLflow and ml-metadata (installed into bench/.peers/ first).
bench: $(STAMP) peers
	$(BIN)/python -m bench.suite

# Seconds-long version without peers, to keep the harness working (tests/bench runs it in `make test`).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench.suite --smoke

peers:
	bench/install_peers.sh

# Offline checks of deploy/ (no Docker engine or cluster needed): kubectl kustomize renders each overlay,
# kubernetes-validate --strict and check-jsonschema (compose spec) validate, pytest checks the semantics.
validate-deploy: $(STAMP)
	$(BIN)/python -m pytest tests/deploy -q

# The venv is rebuilt from the hashed lock file whenever the lock or the project metadata changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Regenerate the committed Python contracts from protos/ (tests fail when they drift); SERVICES="runs" limits it.
proto: $(STAMP)
	$(BIN)/python -m services.common.protogen $(SERVICES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-resolve dependencies; needs uv (pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache test-artifacts
