# The README's commands. Everything runs from a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE_PHOTO := storage/sample_photos/holdout/obama3.jpg
export DAGSTER_HOME ?= $(CURDIR)/storage/dagster

.PHONY: install models demo test lint format dev bench bench-dev bench-serve bench-serve-memory bench-scaling bench-distributed

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres,celery]'

models: install
	$(BIN)/facerec models install

# Install, provision the models, build the sample domain end to end (offline), show the gallery
# and recognize a held-out photo.
demo: models
	$(BIN)/facerec sample
	$(BIN)/facerec run --domain sample
	$(BIN)/facerec stats --domain sample
	$(BIN)/facerec recognize --domain sample $(SAMPLE_PHOTO)

# Install and run the test suite (the test photos are fetched from PyPI once into .cache/; Debian's
# postgresql and chromium, which the suite runs for real, are installed when missing).
test: install
	scripts/install-system-packages.sh
	$(BIN)/python -m facerec_pipeline.app.sample .cache/test_images
	$(BIN)/python -m pytest -q

# Speed of each face model against DeepFace on this machine; writes BENCHMARKS.md (about 15
# minutes on 2 cores).
bench: install
	$(BIN)/python -m bench.run

# Recognition quality on the LFW development set (build it with ../shared/datasets/build_lfw_dev.py;
# FACEREC_DEV_SET=<its folder>), for each offline face model: rank-1, DIR, FAR, every setting of
# each model replayed, DeepFace beside (about 25 minutes on 2 cores).
bench-dev: install
	$(BIN)/python -m bench.dev_set

# Load on the real `facerec serve`: 1, 4 and 16 concurrent clients (latency percentiles, throughput,
# errors, peak RSS) and DeepFace.find on the same photos; the LFW dev set with FACEREC_DEV_SET.
bench-serve: install
	$(BIN)/python -m bench.serve_load

# Memory of `facerec serve` under mixed large uploads (24-59 MP JPEG and PNG, 16-bit PNG).
bench-serve-memory: install
	$(BIN)/python -m bench.serve_memory

# How the face work scales with processes: in process, one thread, the worker pool cold and warm.
bench-scaling: install
	$(BIN)/python -m bench.local_scaling

# The LFW dev set (FACEREC_DEV_SET) built on PostgreSQL in process and through Celery workers
# (one and two face workers, two batch sizes), each build scored (about 20 minutes on 2 cores).
bench-distributed: install
	$(BIN)/python -m bench.distributed

lint:
	$(BIN)/ruff check facerec_pipeline facerec_pipeline_tests bench
	$(BIN)/ruff format --check facerec_pipeline facerec_pipeline_tests bench

format:
	$(BIN)/ruff format facerec_pipeline facerec_pipeline_tests bench
	$(BIN)/ruff check --fix facerec_pipeline facerec_pipeline_tests bench

# The Dagster UI with every asset, check, sensor and job (http://localhost:3000).
dev:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml
