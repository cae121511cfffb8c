# The README's two commands, `make up` and `make test`, do every set-up step themselves.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up test bench bench-queries clean

install: $(STAMP)

$(STAMP): pyproject.toml deploy/local/install-system.sh
	bash deploy/local/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

up: install
	$(BIN)/headwater up

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.indexer
	$(BIN)/python -m bench.queries

# the analytics queries on 10 million events alone (ClickHouse only)
bench-queries: install
	$(BIN)/python -m bench.queries

clean:
	rm -rf .local/test .local/bench
