# The README's two commands, `make up` and `make test`, do every set-up step themselves.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up lint lock test bench bench-queries chaos profile clean

JS     := sdks/js
DASH   := dashboard/web

install: $(STAMP) $(JS)/dist/hw.js dashboard/static/dashboard.js

$(STAMP): pyproject.toml deploy/local/install-system.sh
	bash deploy/local/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# the tracking script: npm packages from the lockfile, then a minified build the collector serves.
# (Not `npm ci`: the lockfile lacks the entries of optional native packages for other platforms,
# which the package registry here does not serve, and `npm ci` refuses such a lockfile.)
$(JS)/node_modules/.installed-stamp: $(JS)/package-lock.json deploy/local/install-system.sh
	bash deploy/local/install-system.sh
	cd $(JS) && npm install --no-audit --no-fund --no-save
	touch $@

$(JS)/dist/hw.js: $(JS)/node_modules/.installed-stamp $(JS)/build.mjs $(wildcard $(JS)/src/*.js)
	cd $(JS) && npm run -s build

# the dashboard's script and styles, with uPlot bundled in (no CDN)
$(DASH)/node_modules/.installed-stamp: $(DASH)/package-lock.json deploy/local/install-system.sh
	bash deploy/local/install-system.sh
	cd $(DASH) && npm install --no-audit --no-fund --no-save
	touch $@

dashboard/static/dashboard.js: $(DASH)/node_modules/.installed-stamp $(DASH)/build.mjs $(wildcard $(DASH)/src/*)
	cd $(DASH) && npm run -s build

up: install
	$(BIN)/headwater up

# the layers (the kernel imports no role; the roles stand apart; only the command imports them all),
# style, and the types of the kernel, the roles and the command
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy

# the image's Python dependencies, every transitive one pinned with its hashes, from pyproject.toml
lock: install
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --universal \
		-o deploy/docker/requirements.lock

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.hotpath
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.indexer
	$(BIN)/python -m bench.catalogue
	$(BIN)/python -m bench.queries
	$(BIN)/python -m bench.forwarder
	$(BIN)/python -m bench.alerts
	$(BIN)/python -m bench.tags
	$(BIN)/python -m bench.imports
	$(BIN)/python -m bench.discovery

# faults while events flow (kill -9 of each role, a Kafka restart, ClickHouse down), then the counts
chaos: install
	$(BIN)/python -m bench.chaos

# where each role spends its time under the end-to-end load (py-spy; PROFILE_ROLES, PROFILE_EVENTS)
profile: install
	$(BIN)/python -m bench.profile

# the analytics queries on 10 million events alone (ClickHouse only)
bench-queries: install
	$(BIN)/python -m bench.queries

clean:
	rm -rf .local/test .local/bench .local/bench-indexer .local/bench-catalogue .local/chaos .local/profile $(JS)/dist dashboard/static
