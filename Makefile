# minimovq — two commands:  `make lab` (set up + open JupyterLab)  and  `make test` (set up + run everything).
#
# The environment is the active virtualenv or conda env if there is one, else ./.venv (created here).
# On a machine without an NVIDIA GPU (no nvidia-smi) the small CPU-only torch build is installed (from the PyTorch
# index); TORCH_CPU=1 forces it, TORCH_CPU=0 forces the default (CUDA) build.
# `make lab` opens your own copies of the lessons in work/ (git-ignored, created when missing, never overwritten).

PYTHON ?= python3
ifdef VIRTUAL_ENV
  ENV_DIR := $(VIRTUAL_ENV)
else ifdef CONDA_PREFIX
  ENV_DIR := $(CONDA_PREFIX)
else
  ENV_DIR := .venv
endif
PY := $(ENV_DIR)/bin/python
STAMP := $(ENV_DIR)/.minimovq-installed
TORCH_CPU ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,1)
# The CPU index is used only when it answers: behind a mirror or proxy that reaches PyPI alone, pip would retry it
# for every package (minutes), so an unreachable index falls back to PyPI's default build, and says so. Recursive
# (=) variables: the probe runs only when the setup recipe needs it, not on every make command.
TORCH_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_UP = $(if $(filter 1,$(TORCH_CPU)),$(shell $(PYTHON) -c "import socket; socket.create_connection(('download.pytorch.org', 443), 3)" 2>/dev/null && echo 1),)
PIP_EXTRA = $(if $(TORCH_INDEX_UP),--extra-index-url $(TORCH_INDEX),)
WORK ?= work
JOBS ?= 2
# Jupyter refuses to start as root (common in containers) unless told it may.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test setup notebooks check-notebooks unit nbtest bench bench-compare reference clean help
help:
	@echo "make lab        set up the environment and open JupyterLab on your copies of the lessons (work/)"
	@echo "make test       set up the environment and run the unit tests + every notebook (quick profile)"
	@echo "make notebooks  regenerate student + solution notebooks from notebooks/src/ (FORCE=1: overwrite edits)"
	@echo "make bench      print the speed and memory tables in benchmarks/"
	@echo "make reference  run every solution notebook (cpu profile) into docs/reference/ (about an hour)"

$(ENV_DIR)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "minimovq needs Python 3.10 or newer"'
	$(PYTHON) -m venv $(ENV_DIR)

$(STAMP): pyproject.toml | $(ENV_DIR)/bin/python
	$(PY) -m pip install -q --upgrade pip
	@echo "Installing minimovq and its dependencies into $(ENV_DIR), including PyTorch"
	@echo "($(if $(PIP_EXTRA),the CPU-only build: no NVIDIA GPU found; about 200 MB,$(if $(filter 1,$(TORCH_CPU)),the default build from PyPI: no NVIDIA GPU found but $(TORCH_INDEX) is unreachable; several GB,the default CUDA build: several GB))). This takes a while; pip shows its progress."
	$(PY) -m pip install $(PIP_EXTRA) -e ".[lab,dev]"
	@touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(PY) -m minimovq.authoring --workspace $(WORK)
	$(PY) -m jupyter lab $(LAB_FLAGS) $(WORK)/

# Unit tests and all ten notebooks (student + solution of every lesson) in the quick profile, two workers.
test: setup
	$(PY) -m ruff check minimovq tests benchmarks
	CI=$${CI:-1} MINIMOVQ_PROFILE=quick OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -q -n $(JOBS) \
		--dist loadfile --nbval-lax --nbval-cell-timeout=900 \
		tests notebooks/*.ipynb notebooks/solutions/*.ipynb

unit: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) tests

nbtest: setup
	MINIMOVQ_PROFILE=quick OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --dist loadfile --nbval-lax \
		notebooks/*.ipynb notebooks/solutions/*.ipynb

notebooks: setup
	$(PY) -m minimovq.authoring $(if $(filter 1,$(FORCE)),--force,)

check-notebooks: setup
	$(PY) -m minimovq.authoring --check

# Executed copies of every solution notebook + docs/reference/results.json (PROFILE=gpu: docs/reference/gpu/).
PROFILE ?= cpu
reference: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m minimovq.reference --profile $(PROFILE) $(LESSONS)

# bench_official.py (against SBER-MoVQGAN) and bench_vs_vqp.py (against vector-quantize-pytorch) need the other
# code on disk: `make bench-compare OFFICIAL=path/to/MoVQGAN` (their docstrings say how to get it).
COMPARE := benchmarks/bench_official.py benchmarks/bench_vs_vqp.py
bench: setup
	for f in $(filter-out $(COMPARE),$(wildcard benchmarks/bench_*.py)); do echo "== $$f"; $(PY) $$f || exit 1; done

bench-compare: setup
	MINIMOVQ_OFFICIAL_MOVQGAN=$(OFFICIAL) $(PY) benchmarks/bench_official.py
	$(PY) benchmarks/bench_vs_vqp.py

clean:
	rm -rf build dist *.egg-info .pytest_cache checkpoints
