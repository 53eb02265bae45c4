# COFRAP credential functions. `make help` lists the targets.
#
# Everything a target needs that a fresh Debian machine lacks (PostgreSQL,
# Python's venv module) is installed by the target itself.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO    ?= cargo
VENV     := .venv
# The functions: one binary crate each under bins/.
FUNCTIONS := $(notdir $(wildcard bins/*))
# Images: $(REGISTRY)/<function>:$(TAG), as in stack.yaml.
REGISTRY ?= ghcr.io/cofrap
TAG      ?= latest
PLATFORMS ?= linux/amd64,linux/arm64
NAMESPACE := openfaas-fn
# The static build of the empty-root test (glibc, +crt-static; the images use musl).
HOST     := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
PYTHON   := $(VENV)/bin/python
# apt-get needs root: use sudo when we are not root.
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# A throwaway cluster (pg_virtualenv -t: its own temporary folder) on a free
# port: pg_virtualenv would take 5432, and the socket of a second cluster
# on the machine (another checkout's make test) would clash on it.
THROWAWAY_PG := PGPORT=$$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') pg_virtualenv -t
# Quiet psql: no NOTICEs ("already exists, skipping") from idempotent migrations.
PSQL     := PGOPTIONS=--client-min-messages=warning psql -X -q -v ON_ERROR_STOP=1

.PHONY: help build static test lint db-migrate test-deps test-on-database clean \
        images push deploy secrets db up bench run pg-deps tls-deps

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the function binaries (release, in target/release/)
	$(CARGO) build --release --locked --workspace --bins

static: ## Fully static release binaries of the functions in target/<host triple>/release/, for the empty-root test
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(HOST) \
	    $(addprefix --package ,$(FUNCTIONS))

run: pg-deps ## Run everything on this machine: PostgreSQL, the functions and the page (http://127.0.0.1:8080)
	$(CARGO) build --release --locked --workspace --bins
	dev/run

test: test-deps static ## Run every test on a throwaway PostgreSQL (or on DATABASE_URL if set)
	$(CARGO) build --locked --workspace --bins
	@if [ -n "$$DATABASE_URL" ]; then \
	    $(MAKE) --no-print-directory test-on-database; \
	else \
	    echo "Starting a throwaway PostgreSQL cluster (pg_virtualenv)"; \
	    $(THROWAWAY_PG) sh -c '$(MAKE) --no-print-directory test-on-database'; \
	fi

# Runs inside the database environment that `test` set up.
test-on-database:
	$(MAKE) --no-print-directory db-migrate
	COFRAP_TEST_PYTHON=$(CURDIR)/$(PYTHON) $(CARGO) test --locked --workspace --no-fail-fast

bench: test-deps ## Measure each function as the watchdog runs it; writes BENCHMARKS.md (a few minutes)
	$(CARGO) build --release --locked --workspace --bins
	@if [ -n "$$DATABASE_URL" ]; then \
	    target/release/cofrap-bench; \
	else \
	    $(THROWAWAY_PG) target/release/cofrap-bench; \
	fi

lint: ## rustfmt check and clippy, warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

db-migrate: ## Apply migrations/*.sql to DATABASE_URL, or the database the PG* variables name
	@for migration in migrations/*.sql; do \
	    $(PSQL) $${DATABASE_URL:+"$$DATABASE_URL"} -f "$$migration" || exit 1; \
	done

# PostgreSQL: server, pg_virtualenv, psql.
pg-deps:
	@if ! command -v pg_virtualenv >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	    echo "Installing PostgreSQL from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql postgresql-common postgresql-client; \
	fi

# Chromium and its WebDriver, for the end-to-end test of the page.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	    echo "Installing Chromium and chromedriver from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# openssl, which tests/tls.rs uses to make a CA and the server's certificate.
tls-deps:
	@if ! command -v openssl >/dev/null; then \
	    echo "Installing openssl from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssl; \
	fi

# Everything the tests use: PostgreSQL, Chromium, openssl, the Python peers of the parity tests.
test-deps: pg-deps browser-deps tls-deps $(PYTHON)

$(PYTHON): tests/requirements.txt
	@python3 -m venv --help >/dev/null 2>&1 || { \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-venv; }
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

images: ## Build the function images for this machine's platform
	@for function in $(FUNCTIONS); do \
	    docker build --build-arg FUNCTION=$$function -f dockerfiles/Dockerfile \
	        -t $(REGISTRY)/$$function:$(TAG) . || exit 1; \
	done

push: ## Push the images: linux/amd64 and linux/arm64 with buildx, else the local ones
	@if docker buildx version >/dev/null 2>&1; then \
	    for function in $(FUNCTIONS); do \
	        docker buildx build --platform $(PLATFORMS) --build-arg FUNCTION=$$function \
	            -f dockerfiles/Dockerfile -t $(REGISTRY)/$$function:$(TAG) --push . || exit 1; \
	    done; \
	else \
	    $(MAKE) --no-print-directory images && \
	    for function in $(FUNCTIONS); do docker push $(REGISTRY)/$$function:$(TAG) || exit 1; done; \
	fi

deploy: ## Deploy the functions to OpenFaaS (faas-cli deploy -f stack.yaml)
	REGISTRY=$(REGISTRY) TAG=$(TAG) faas-cli deploy -f stack.yaml

secrets: ## Create the secrets in openfaas-fn with generated values (existing ones are kept)
	NAMESPACE=$(NAMESPACE) k8s-secrets/create-secrets.sh

db: ## Deploy PostgreSQL in openfaas-fn and apply the schema (a Job running migrations/*.sql)
	kubectl apply -f k8s/postgres.yaml
	kubectl -n $(NAMESPACE) create configmap cofrap-migrations --from-file=migrations/ \
	    --dry-run=client -o yaml | kubectl apply -f -
	kubectl -n $(NAMESPACE) rollout status statefulset/postgres --timeout=300s
	kubectl -n $(NAMESPACE) delete job cofrap-db-migrate --ignore-not-found
	kubectl apply -f k8s/db-migrate-job.yaml
	kubectl -n $(NAMESPACE) wait --for=condition=complete job/cofrap-db-migrate --timeout=300s

up: secrets db push deploy ## Everything, in order: secrets, database and schema, images, functions

clean: ## Remove build outputs and the test virtual environment
	$(CARGO) clean
	rm -rf $(VENV) build
