# Two entry points on a fresh clone: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch==2.13.0 is the CPU wheel on these machines; on a GPU box see README "GPU install".
TORCH  ?= torch==2.13.0
# The lock: every package (pip and the build backend included) pinned to what `make lock` resolved.
# PIP_CONSTRAINT (not -c) so that pip applies it inside the isolated build environment too.
LOCK   := constraints.txt
PIP    := PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(PY) -m pip

.PHONY: run test lint format install lock system-deps clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q pip
	$(PIP) install -q -e '.[all,dev]' $(TORCH)
	touch $(STAMP)

install: $(STAMP)

# Services and the browser the tests use; installed from Debian when missing (needs root).
system-deps:
	@bash scripts/system-deps.sh

# Resolve pyproject.toml's ranges anew in a scratch venv and write the lock. Commit the result on
# its own ("lock: refresh"), after `make test` passes with it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -U pip
	.lock-venv/bin/python -m pip install -q -e '.[all,dev]' $(TORCH)
	{ echo "# The lock for .venv: written by \`make lock\` on $$(date -u +%F), Python $$(.lock-venv/bin/python -V | cut -d' ' -f2)."; \
	  echo "# Every install (make run, make test, CI) uses it as PIP_CONSTRAINT; do not edit by hand."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv

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
	rm -rf $(VENV) .lock-venv .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
