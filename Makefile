# Two commands do all the set-up on a fresh machine (each creates .venv when it is missing):
#   make demo   install, then run a real extraction on the sample events (doxa demo)
#   make test   install, then ruff, mypy --strict and the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres,server,ray]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/doxa demo

lint: install
	$(VENV)/bin/ruff check src tests evals scripts
	$(VENV)/bin/mypy --strict src

test: lint
	$(PY) -m pytest -q
