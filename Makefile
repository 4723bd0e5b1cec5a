# Two commands on a fresh machine with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "billbridge needs Python 3.11+ (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/billbridge demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# mypy cannot follow setuptools' editable import hook, so it reads the package through a
# folder of symlinks that mirrors the wheel's layout (billbridge/<folder>).
PACKAGE_FOLDERS := core workflows activities workers starter emulators

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p .typecheck/billbridge
	@for d in $(PACKAGE_FOLDERS); do ln -sfn ../../$$d .typecheck/billbridge/$$d; done
	MYPYPATH=.typecheck $(BIN)/mypy --explicit-package-bases -p billbridge

bench: $(STAMP)
	$(BIN)/python bench/export_throughput.py
	$(BIN)/python bench/quickbooks_export.py
	$(BIN)/python bench/provider_limits.py
	$(BIN)/python bench/shared_rate.py
	$(BIN)/python bench/stripe_balance.py
	$(BIN)/python bench/metering.py

# 500 invoices and metering under worker kills, a server restart, faults and a pause; then a
# reconciliation of every emulator's state (tests/chaos_harness.py). tests/test_chaos.py runs a
# short one with the tests.
chaos: $(STAMP)
	$(BIN)/python tests/chaos_run.py

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache *.egg-info
