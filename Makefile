# Two commands for people (README): `make lab` and `make test`. Both make .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab demo test bench report clean-venv

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "cryptolab needs Python >= 3.10 (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## make lab: database up, schema applied, JupyterLab on the live dashboard
lab: $(STAMP)
	$(BIN)/cryptolab lab

## make demo: headless twin of `make lab` for servers and CI
demo: $(STAMP)
	$(BIN)/cryptolab demo --source simulator --seconds 30

## make test: the whole test suite against a real PostgreSQL (embedded unless CRYPTOLAB_TEST_DSN)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: the benchmarks under benchmarks/, figures printed
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
