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
RUN ?=
OUT ?=
EPOCHS ?=
ARGS ?=
# sweep / curve / tables / server
TASKS ?=
KEEP ?=
TUNE ?=
DRY_RUN ?=
LAUNCHER ?=
WORKERS ?=
SUITE ?= $(PRESET)
STORE ?= sqlite:///$(CURDIR)/results/mlflow.db
ARTIFACTS ?= $(CURDIR)/results/mlartifacts
HOST ?= 127.0.0.1
PORT ?= 5000

opt = $(if $(2),--$(1) $(2))
COMMON_ARGS = --preset $(PRESET) $(call opt,petl,$(PETL)) \
	$(call opt,methods,$(METHODS)) $(call opt,seeds,$(SEEDS)) $(call opt,source,$(SOURCE)) \
	$(call opt,data,$(DATA)) $(call opt,backbone,$(BACKBONE)) $(call opt,checkpoint,$(CHECKPOINT)) \
	$(call opt,device,$(DEVICE)) $(call opt,budget,$(BUDGET)) $(call opt,epochs,$(EPOCHS)) $(ARGS)
BENCH_ARGS = $(call opt,task,$(TASK)) $(COMMON_ARGS)
SWEEP_ARGS = $(call opt,tasks,$(TASKS)) $(call opt,launcher,$(LAUNCHER)) \
	$(call opt,workers,$(WORKERS)) $(if $(DRY_RUN),--dry-run) $(COMMON_ARGS)

.PHONY: install bench sweep curve tables server config tasks prepare export pretrain-demo test test-fast mutate ui lint format help

help:
	@echo "make bench   run the benchmark (offline default: digits, demo preset)"
	@echo "make sweep   every task x method x seed not yet finished (TASKS=all DRY_RUN=1 WORKERS=2 LAUNCHER=slurm)"
	@echo "make curve   TASK=<task> [KEEP=1-12] [SEEDS=...] [TUNE=1]  the accuracy-depth curve (resumable)"
	@echo "make tables  the paper's tables and plots in results/tables/<SUITE> (SUITE=demo|paper|...)"
	@echo "make server  an mlflow server for several machines (STORE=postgresql://... ARTIFACTS=... HOST=...)"
	@echo "make config  every run and pruner setting PRESET resolves to (PRESET=paper: the authors' choices)"
	@echo "make tasks   the 19 VTAB-1k tasks and whether their data is found (DATA=...)"
	@echo "make prepare TASK=<task|all> DATA=<dir> [EXPORT=<dir>]  prepare tfds data"
	@echo "make export  RUN=<run id> OUT=<dir> [CHECKPOINT=...]  the deployed model of a finished run"
	@echo "make pretrain-demo  pretrain the demo ViT on generated fractals (~25 min on 2 cores; ARGS=--epochs ...)"
	@echo "make test    run the test suite"
	@echo "make test-fast  the tests but the slow ones (end-to-end runs, servers, workers, compiling): ~2 min"
	@echo "make mutate [MODULES=bench/budget.py ...]  mutation testing of the core (mutmut): scores, survivors"
	@echo "make ui      the MLflow UI on 127.0.0.1:5000; prints the link to SUITE's runs table"
	@echo "make lint    ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(PY) -m bench bench $(BENCH_ARGS)

sweep: $(STAMP)
	$(PY) -m bench sweep $(SWEEP_ARGS)

curve: $(STAMP)
	$(PY) -m bench curve $(call opt,task,$(TASK)) $(call opt,tasks,$(TASKS)) $(call opt,keep,$(KEEP)) \
		$(if $(TUNE),--tune) $(call opt,launcher,$(LAUNCHER)) $(call opt,workers,$(WORKERS)) \
		$(if $(DRY_RUN),--dry-run) $(COMMON_ARGS)

tables: $(STAMP)
	$(PY) -m bench tables --suite $(SUITE)

# A tracking server shared by several machines; bind HOST=0.0.0.0 only on a trusted network.
server: $(STAMP)
	$(PY) -m mlflow server --backend-store-uri $(STORE) --artifacts-destination $(ARTIFACTS) \
		--host $(HOST) --port $(PORT)

config: $(STAMP)
	$(PY) -m bench presets --show $(PRESET)

tasks: $(STAMP)
	$(PY) -m bench tasks $(call opt,data,$(DATA))

# Preparing tfds data needs TensorFlow: the optional extra is installed here, not by `install`.
prepare: $(STAMP)
	@test -n "$(TASK)" -a -n "$(DATA)" || { echo "usage: make prepare TASK=<task|group|all> DATA=<tfds data_dir> [EXPORT=<vtab-1k root>]"; exit 2; }
	$(PY) -m pip install -e ".[tensorflow]"
	$(PY) -m bench prepare --task $(TASK) --data $(DATA) $(call opt,export,$(EXPORT))

export: $(STAMP)
	@test -n "$(RUN)" -a -n "$(OUT)" || { echo "usage: make export RUN=<run id> OUT=<dir> [CHECKPOINT=<backbone file>]"; exit 2; }
	$(PY) -m bench export --run $(RUN) --out $(OUT) $(call opt,checkpoint,$(CHECKPOINT))

# The weights of the demo preset (bench/weights/demo_vit_fractal.safetensors and its .json).
pretrain-demo: $(STAMP)
	$(PY) -m bench.pretrain $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Mutation testing (mutmut, [tool.mutmut] in pyproject.toml): every mutant of the core modules, or of
# MODULES only, against the fast tests that cover it; then the score per module and the survivors.
MODULES ?=
mutate: $(STAMP)
	rm -rf mutants && mkdir mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 \
		$(foreach m,$(MODULES),"$(subst /,.,$(m:.py=)).*") > mutants/run.log 2>&1 \
		|| { tail -c 3000 mutants/run.log; exit 1; }
	$(PY) tests/mutation/report.py $(MODULES)

ui: $(STAMP)
	$(PY) -m bench ui --suite $(SUITE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
