# The front door. `make bench` runs the offline default; `make test` runs the tests.
# Real runs: make bench TASK=cifar100 SOURCE=folder DATA=/data/vtab-1k PRESET=paper CHECKPOINT=ViT-B_16.npz

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PRESET ?= demo
# Unset variables keep the preset's values.
TASK ?=
PETL ?=
METHODS ?=
SEEDS ?=
SOURCE ?=
DATA ?=
BACKBONE ?=
CHECKPOINT ?=
DEVICE ?=
BUDGET ?=
EXPORT ?=
EPOCHS ?=
ARGS ?=

opt = $(if $(2),--$(1) $(2))
BENCH_ARGS = --preset $(PRESET) $(call opt,task,$(TASK)) $(call opt,petl,$(PETL)) \
	$(call opt,methods,$(METHODS)) $(call opt,seeds,$(SEEDS)) $(call opt,source,$(SOURCE)) \
	$(call opt,data,$(DATA)) $(call opt,backbone,$(BACKBONE)) $(call opt,checkpoint,$(CHECKPOINT)) \
	$(call opt,device,$(DEVICE)) $(call opt,budget,$(BUDGET)) $(call opt,epochs,$(EPOCHS)) $(ARGS)

.PHONY: install bench tasks prepare test ui lint format help

help:
	@echo "make bench   run the benchmark (offline default: digits, demo preset)"
	@echo "make tasks   the 19 VTAB-1k tasks and whether their data is found (DATA=...)"
	@echo "make prepare TASK=<task|all> DATA=<dir> [EXPORT=<dir>]  prepare tfds data"
	@echo "make test    run the test suite"
	@echo "make ui      open the MLflow UI on 127.0.0.1:5000"
	@echo "make lint    ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(PY) -m bench bench $(BENCH_ARGS)

tasks: $(STAMP)
	$(PY) -m bench tasks $(call opt,data,$(DATA))

# Preparing tfds data needs TensorFlow: the optional extra is installed here, not by `install`.
prepare: $(STAMP)
	@test -n "$(TASK)" -a -n "$(DATA)" || { echo "usage: make prepare TASK=<task|group|all> DATA=<tfds data_dir> [EXPORT=<vtab-1k root>]"; exit 2; }
	$(PY) -m pip install -e ".[tensorflow]"
	$(PY) -m bench prepare --task $(TASK) --data $(DATA) $(call opt,export,$(EXPORT))

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

ui: $(STAMP)
	$(PY) -m bench ui

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
