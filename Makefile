# Two entry points on a fresh clone: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch==2.13.0 is the CPU wheel on these machines; on a GPU box see README "GPU install".
TORCH  ?= torch==2.13.0

.PHONY: run test lint format install system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -e '.[all,dev]' $(TORCH)
	touch $(STAMP)

install: $(STAMP)

# Services and the browser the tests use; installed from Debian when missing (needs root).
system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	$(VENV)/bin/stylebot run

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
