# Two entry points on a fresh clone: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch==2.13.0 is the CPU wheel on these machines; on a GPU box see README "GPU install".
TORCH  ?= torch==2.13.0
# The lock: every package pinned to what `make lock` resolved (docs/development.md). Installs use uv:
# from a clean cache it installs the locked set in 24 s here, pip in 216 s (same lock, same torch).
LOCK   := constraints.txt
UV_VERSION := 0.13.9
UV     := $(VENV)/bin/uv
# The CPU build of torch: a file on these machines' disk, else PyTorch's CPU index.
TORCH_LINKS ?= /opt/wheels
TORCH_SOURCE := $(if $(wildcard $(TORCH_LINKS)),--find-links $(TORCH_LINKS),\
	--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

.PHONY: run test lint format install lock system-deps clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install -q uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) -c $(LOCK) --build-constraint $(LOCK) $(TORCH_SOURCE) \
		-e '.[all,dev]' $(TORCH)
	touch $(STAMP)

install: $(STAMP)

# Services and the browser the tests use; installed from Debian when missing (needs root).
system-deps:
	@bash scripts/system-deps.sh

# Resolve pyproject.toml's ranges anew and rewrite the lock (torch: the CPU build; setuptools: the
# build backend, pinned too). Commit the result on its own ("lock: refresh") once `make test` passes.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install -q uv==$(UV_VERSION)
	printf '%s+cpu\nsetuptools\n' '$(TORCH)' > $(LOCK).in
	$(UV) pip compile -q pyproject.toml $(LOCK).in --extra all --extra dev $(TORCH_SOURCE) \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --upgrade \
		--custom-compile-command 'make lock' -o $(LOCK)
	rm -f $(LOCK).in

run: $(STAMP)
	$(VENV)/bin/stylebot run

# mypy checks src (config: pyproject.toml [tool.mypy]); from cold it takes about 30 s here.
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info src/*.egg-info
