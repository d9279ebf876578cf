# The two commands a newcomer needs: `make run` serves the service, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEV_KEY := dev-key-change-me
# run and relay share it, so the service's /metrics also reports the relay (docs/operations.md, Metrics)
METRICS_DIR := $(CURDIR)/var/metrics

# What the suite reached when the floor was set (97 %), less a point for paths only timing decides.
COVERAGE_FLOOR ?= 96

.PHONY: run relay check test lint clients bench soak migrate system-deps node-deps check-schemas release-schemas bench-avro clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: serve on http://localhost:9090 (SQLite under var/ unless DATABASE_URL or APP_DB_HOST is set)
run: $(VENV)/.runtime
	@if [ -z "$$APP_API_KEYS" ]; then \
	  echo "APP_API_KEYS is not set: writes accept the local development key '$(DEV_KEY)' (header X-API-Key)."; \
	fi
	APP_API_KEYS="$${APP_API_KEYS:-$(DEV_KEY)}" PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$(METRICS_DIR)}" $(BIN)/python serve.py

## relay: publish committed events to RabbitMQ (AMQP_URL, RELAY_EXCHANGE; docs/events.md)
relay: $(VENV)/.runtime
	PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$(METRICS_DIR)}" $(BIN)/python relay.py

## lint: ruff, mypy and the import layers (pyproject.toml)
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## check: the inner loop, under a minute: lint, then the unit tier (no database, no server)
check: lint
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

## test: lint, then every tier (unit, integration on SQLite, PostgreSQL and RabbitMQ, end-to-end), with coverage
## of the service's own code, which must stay at COVERAGE_FLOOR % or above (not checked when PYTEST_ARGS picks a part)
test: $(VENV)/.dev system-deps node-deps lint
	$(BIN)/python -m pytest --cov --cov-report=term $(if $(PYTEST_ARGS),,--cov-fail-under=$(COVERAGE_FLOOR)) $(PYTEST_ARGS)

## clients: generate the Python client into clients/python/ from SPEC_URL (e.g. http://localhost:9090/openapi.json),
## or, without SPEC_URL, from a server it starts on a free loopback port with a throwaway SQLite file and stops
clients: $(VENV)/.dev
	$(BIN)/python scripts/generate_python_client.py $(if $(SPEC_URL),--url '$(SPEC_URL)')

## node-deps: the Node packages of clients/typescript (npm ci when node_modules is missing or the lock file changed)
node-deps:
	@bash scripts/ensure-node-deps.sh

## check-schemas: every Avro schema is FULL_TRANSITIVE compatible with its released versions (also run by make test)
check-schemas: $(VENV)/.runtime
	$(BIN)/python -m contract.evolution check

## release-schemas: record changed Avro schemas as their next released version in schemas/history/
release-schemas: $(VENV)/.runtime
	$(BIN)/python -m contract.evolution release

## bench: the service against a plain-Flask floor and stock Connexion on a throwaway PostgreSQL (about 11 minutes; writes bench/RESULTS.md)
bench: $(VENV)/.runtime system-deps
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## soak: mixed load on the service and the relay over a throwaway PostgreSQL and RabbitMQ, the broker restarted mid-run;
## fails unless every acknowledged write is stored and every committed event delivered in order (about 6 minutes; writes bench/SOAK.md)
soak: $(VENV)/.runtime
	@bash scripts/ensure-postgres.sh
	@bash scripts/ensure-rabbitmq.sh
	@bash scripts/ensure-nginx.sh
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

## bench-avro: encode/decode rate and size of a page of 100 rooms, Avro vs JSON (updates bench/RESULTS.md)
bench-avro: $(VENV)/.runtime
	$(BIN)/python -m bench.avro_vs_json --write

## migrate: apply the migrations to the configured database
migrate: $(VENV)/.runtime
	$(BIN)/python -c "from providers.database import migrate; from settings import Settings; migrate(Settings.from_env().database_url)"

## system-deps: PostgreSQL, RabbitMQ, nginx, Chromium (+ chromedriver) and podman (+ runc, mmdebstrap) for the tests
## (apt-get when missing and root)
system-deps:
	@bash scripts/ensure-postgres.sh
	@bash scripts/ensure-rabbitmq.sh
	@bash scripts/ensure-nginx.sh
	@bash scripts/ensure-chromium.sh
	@bash scripts/ensure-podman.sh

clean:
	rm -rf $(VENV) var .pytest_cache clients/python clients/typescript/node_modules clients/typescript/generated
