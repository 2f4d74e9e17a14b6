# `make run` and `make test` each set everything up first (a virtual environment in .venv with
# mlx installed in editable mode), then run. Re-running reuses the environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 has a CPU build that installs without a multi-GB CUDA download on CPU machines;
# any torch >= 2.4 works (TORCH="torch" to let pip choose)
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/mlx run $(ARGS)

test: setup
	$(BIN)/pytest $(ARGS)

test-fast: setup
	$(BIN)/pytest -m "not slow" $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/strategy_quality.py
	$(BIN)/python benchmarks/nas.py
	$(BIN)/python benchmarks/compression.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
