# The two commands a user needs are `make demo` and `make test`; `make install` is run by both.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test test-unit test-integration chaos demo bench compose-check screenshots browser reset clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/mlops doctor --install
	touch $(STAMP)

# Each service's package lives in services/<name>/; the import contracts need them importable.
SERVICE_PATH := $(subst $(eval) ,:,$(wildcard services/*))

# The architecture and the types, checked before any test runs: layer contracts (pyproject.toml
# [tool.importlinter]), mypy (strict on the core and the ports), ruff.
lint: install
	PYTHONPATH=$(SERVICE_PATH) $(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/ruff check shared services tests bench

test: lint
	$(BIN)/pytest -q

test-unit: install
	$(BIN)/pytest -q tests/unit tests/contract

test-integration: install
	$(BIN)/pytest -q tests/integration tests/e2e

# Faults on a stack of its own, about ten minutes (not part of `make test`): SIGKILL of each service at a
# random point of a round, each emulator killed, a service killed under 500 requests/s; prints a table
# of what was lost or doubled (docs/reliability.md). CHAOS_SEED=<n> replays a run's kill points.
chaos: install
	$(BIN)/pytest -q -m chaos tests/chaos

# The demo runs in its own folder, .mlops-demo/, which it resets (and says so) at every start.
demo: install
	$(BIN)/mlops demo

bench: install
	$(BIN)/python -m bench

# Debian's Chromium for the dashboard's browser tests and screenshots (installed when missing, as root with apt).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } || echo "no chromium: the browser tests will skip"

# docs/screenshots/*.png: the demo's rounds (in .mlops-demo/, reset first), each dashboard page shot, the stack stopped.
screenshots: install browser
	$(BIN)/mlops demo --keep
	$(BIN)/python docs/make_screenshots.py --data-dir .mlops-demo; status=$$?; $(BIN)/mlops down --data-dir .mlops-demo; exit $$status

compose-check: install
	$(BIN)/docker-compose config --quiet

# Stop the local stacks and delete their data (.mlops/ and the demo's .mlops-demo/); keeps .venv.
reset:
	@if [ -x $(BIN)/mlops ]; then $(BIN)/mlops reset --yes --data-dir .mlops && $(BIN)/mlops reset --yes --data-dir .mlops-demo; \
	else rm -rf .mlops .mlops-demo; fi

# Everything `make` made: the stacks (stopped first) with their data, and the .venv.
clean:
	-@[ ! -x $(BIN)/mlops ] || $(BIN)/mlops down --data-dir .mlops
	-@[ ! -x $(BIN)/mlops ] || $(BIN)/mlops down --data-dir .mlops-demo
	rm -rf .mlops .mlops-demo $(VENV)
