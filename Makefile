# soar: the few commands a developer needs. `make lab` and `make test-all` are the README's two.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONNECTORS := $(dir $(wildcard connectors/*/pyproject.toml))
LINTED := soar connectors tests bench
TYPED := soar $(patsubst %/__init__.py,%,$(wildcard connectors/*/soar_*/__init__.py))

.PHONY: install lab test test-all fmt check clean

$(STAMP): pyproject.toml $(wildcard connectors/*/pyproject.toml)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' $(foreach c,$(CONNECTORS),-e $(c))
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/soar lab

test: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/contract

test-all: $(STAMP)
	$(BIN)/pytest -q

fmt: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

check: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy --strict $(TYPED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
