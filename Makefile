# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The LangChain peer of bench/peers.py has a virtualenv of its own: langchain-postgres pins
# pgvector<0.4 and embedkeeper needs pgvector>=0.4, so the two cannot share one.
LC_VENV := .venv-langchain
LC_STAMP := $(LC_VENV)/.installed

.PHONY: demo test lint check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(LC_STAMP): bench/requirements-langchain.txt
	test -x $(LC_VENV)/bin/python || $(PYTHON) -m venv $(LC_VENV)
	$(LC_VENV)/bin/pip install --quiet "torch==2.13.0"
	$(LC_VENV)/bin/pip install --quiet -r bench/requirements-langchain.txt
	touch $(LC_STAMP)

demo: $(STAMP)
	$(BIN)/embedkeeper demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

bench: $(STAMP) $(LC_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LC_VENV) .pytest_cache .mypy_cache .ruff_cache daemon/*.egg-info build dist
