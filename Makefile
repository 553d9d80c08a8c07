# Roundhouse: `make run` starts the gateway, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

.PHONY: install run test lint typecheck unit clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(BIN)/uv pyproject.toml uv.lock
	# Bytecode compiled once here: a first start that compiles ~600 modules takes seconds longer.
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --quiet --compile-bytecode --python $(BIN)/python
	$(BIN)/python -m compileall -q src
	touch $@

# The data plane's hot modules compiled with mypyc (src/roundhouse/_native.py), again whenever
# a source of the package changes: until then they run as plain Python.
$(VENV)/.native: $(VENV)/.synced $(shell $(PYTHON) src/roundhouse/_native.py sources)
	$(BIN)/python src/roundhouse/_native.py build
	touch $@

install: $(VENV)/.synced $(VENV)/.native

run: install
	$(BIN)/roundhouse up $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

test: lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

clean:
	$(PYTHON) src/roundhouse/_native.py clean
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
