# Two commands for people (README): `make lab` and `make test`. Both make .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab demo test lint bench soak report clean-venv

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

# Debian's chromium for the browser test (tests/e2e/test_browser.py); installed only when we may.
BROWSER := $(VENV)/.browser
$(BROWSER):
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no chromium and no root: the browser test will be skipped"; fi
	@touch $(BROWSER)

# Debian's Java 17 for the Spark test (tests/archive/test_engines.py; pyspark itself is in the dev extra).
JAVA := $(VENV)/.java
$(JAVA):
	@if command -v java >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's openjdk-17-jre-headless for the Spark test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	else echo "note: no java and no root: the Spark test will be skipped"; fi
	@touch $(JAVA)

## make lint: ruff (lint, import order, complexity, lines ≤ 110) on everything, mypy strict on cryptolab/,
## the layer rule and the tests-mirror-the-tree rule (make test runs it first)
lint: $(STAMP)
	$(BIN)/ruff check cryptolab tests benchmarks notebooks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py tests/test_tree.py

## make test: lint, then the whole test suite against a real PostgreSQL (embedded unless CRYPTOLAB_TEST_DSN)
test: lint $(BROWSER) $(JAVA)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: the benchmarks under benchmarks/, figures printed (the soak in its --quick form)
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; \
	  if [ $$b = benchmarks/bench_soak.py ]; then $(BIN)/python $$b --quick || exit 1; else $(BIN)/python $$b || exit 1; fi; done

## make soak: >= 1M trades, every fault kind, a database restart, a kill -9 and restart; stored vs the exchange's log
soak: $(STAMP)
	$(BIN)/python benchmarks/bench_soak.py

clean-venv:
	rm -rf $(VENV)
