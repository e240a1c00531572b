# Two commands do all the set-up on a fresh machine (each creates .venv when it is missing):
#   make demo   install, then run a real extraction on the sample events (doxa demo)
#   make test   install, then ruff, mypy --strict and the test suite (what CI runs)
#   make docs   build the documentation site (docs/, mkdocs.yml) strictly into site/
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install install-dev demo test lint docs

# The demo needs doxa alone.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# The tests exercise every extra. torch is pinned first so that sentence-transformers (the
# `embeddings` extra) takes the CPU build instead of resolving a CUDA one of several GB.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[dev,postgres,server,ray,embeddings]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/doxa demo

lint: install-dev
	$(VENV)/bin/ruff check src tests evals scripts
	$(VENV)/bin/mypy --strict src

test: lint
	$(PY) -m pytest -q

docs: install
	$(PY) -m pip install -q -e '.[docs]'
	$(VENV)/bin/mkdocs build --strict
