# Both targets set everything up on a fresh machine (one virtual environment at .venv) and then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU torch. On a GPU machine install the CUDA build you want into .venv first; it is kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint world clean-world

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[train,test]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m llava.demo

lint: setup
	$(VENV)/bin/ruff check llava tests scripts benchmarks

world: setup
	$(PY) -m llava.toy build

clean-world:
	rm -rf playground/toy
