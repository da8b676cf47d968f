# The two commands a user needs are `make demo` and `make test`; `make install` is run by both.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-unit test-integration demo bench compose-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/mlops doctor --install
	touch $(STAMP)

test: install
	$(BIN)/pytest -q

test-unit: install
	$(BIN)/pytest -q tests/unit tests/contract

test-integration: install
	$(BIN)/pytest -q tests/integration tests/e2e

demo: install
	$(BIN)/mlops demo

bench: install
	$(BIN)/python -m bench

compose-check: install
	$(BIN)/docker-compose config --quiet

clean:
	rm -rf .mlops $(VENV)
