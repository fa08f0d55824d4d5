# Every command a person or CI needs, each doing its own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
DEPLOY_VENV ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
LOAD_VENV ?= .venv-load
LOAD_STAMP := $(LOAD_VENV)/.installed

.PHONY: install install-dev install-deploy run test lint typecheck demo-model bench overload clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(DEPLOY_STAMP): requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet -r requirements-deploy.txt
	touch $@

$(LOAD_STAMP): requirements-load.txt
	$(PYTHON) -m venv $(LOAD_VENV)
	$(LOAD_VENV)/bin/pip install --quiet -r requirements-load.txt
	touch $@

install: $(STAMP)

# hadolint, checkov, kubernetes-validate and yamllint for tests/deploy.
install-deploy: $(DEPLOY_STAMP)

install-dev: $(DEV_STAMP)

# The README's first command: install, make sure .env has a key, serve the demo model.
run:
	./scripts/run.sh

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# The whole suite: lint, types, then every test (the demo-model accuracy test and the
# offline Dockerfile/Compose/Kubernetes checks included).
test: lint typecheck $(DEPLOY_STAMP)
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report --skip-covered --skip-empty

# Rebuild checkpoints/demo.{safetensors,json} from nothing (a few minutes on 2 CPU cores).
# Images are generated at the model's scale size (floor(96 / 0.875) = 109 px) so evaluation
# crops them without resampling. resnet10t rather than the efficientnet_b0 default: from
# scratch, on a few hundred images and a CPU budget, a plain ResNet picks up pixel-level
# traces within a few hundred steps, where EfficientNet needs many thousands.
demo-model: $(STAMP)
	$(BIN)/veracity make-sample-data --out data/sample --seed 0 --size 109 \
		--train-per-class 400 --val-per-class 100
	$(BIN)/veracity train --data data/sample --out runs/demo --arch resnet10t \
		--image-size 96 --epochs 12 --batch-size 16 --lr 1e-3 \
		--seed 0 --model-name veracity-demo --model-version 1.0.0 --no-progress
	cp runs/demo/best.safetensors checkpoints/demo.safetensors
	cp runs/demo/best.json checkpoints/demo.json

# The throughput benchmark against the real service (a few minutes; not part of `make test`).
# Needs wrk (apt-get install wrk). Writes bench/results/results.{json,png}.
bench: $(STAMP)
	$(BIN)/pip install --quiet -r requirements-bench.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Overload, soak and SIGTERM-under-load run against the real server, with locust (about
# 3 minutes, loopback only). Exits non-zero if a guarantee breaks; run by .ci/run after the
# suite. Writes bench/results/overload.json.
overload: $(STAMP) $(LOAD_STAMP)
	$(BIN)/python bench/overload.py $(OVERLOAD_ARGS)

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) $(LOAD_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage runs
