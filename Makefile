# COFRAP credential functions. `make help` lists the targets.
#
# Everything a target needs that a fresh Debian machine lacks (PostgreSQL,
# Python's venv module, podman, musl-gcc, cargo-audit) is installed by the
# target itself.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO    ?= cargo
VENV     := .venv
# The functions: one binary crate each under bins/.
FUNCTIONS := $(notdir $(wildcard bins/*))
# The images: one per function, and the operators' tool cofrap-admin
# (dockerfiles/admin.Dockerfile), which the schema Job, the events' pruning
# CronJob and `make admin-job` run.
IMAGES   := $(FUNCTIONS) cofrap-admin
# Images: $(REGISTRY)/<function>:$(TAG), as in stack.yaml.
REGISTRY ?= ghcr.io/cofrap
TAG      ?= latest
PLATFORMS ?= linux/amd64,linux/arm64
NAMESPACE := openfaas-fn
# The database in the cluster, one switch for `make db`, `make deploy` and
# `make up`: postgres (k8s/postgres.yaml: one pod, no TLS, the default) or
# cnpg (k8s/cnpg/: CloudNativePG, three instances behind PgBouncer, TLS at
# verify-full). DB_HOST and DB_SSLMODE become stack.yaml's POSTGRES_HOST and
# POSTGRES_SSLMODE; MIGRATE_HOST is where the schema Job connects (the
# primary itself: SET ROLE needs the session that a transaction pooler
# would not keep).
DATABASE ?= postgres
DB_HOST_postgres      := postgres.$(NAMESPACE).svc.cluster.local
DB_SSLMODE_postgres   := disable
MIGRATE_HOST_postgres := $(DB_HOST_postgres)
DB_HOST_cnpg          := cofrap-db-pooler.$(NAMESPACE).svc.cluster.local
DB_SSLMODE_cnpg       := verify-full
MIGRATE_HOST_cnpg     := cofrap-db-rw.$(NAMESPACE).svc.cluster.local
DB_HOST      = $(DB_HOST_$(DATABASE))
DB_SSLMODE   = $(DB_SSLMODE_$(DATABASE))
MIGRATE_HOST = $(MIGRATE_HOST_$(DATABASE))
# The fully static build of the functions: the images' binaries, built once on
# this machine for the image and empty-root tests (the Dockerfile builds the
# same in its `build` stage).
MUSL     := x86_64-unknown-linux-musl
# ring (rustls's crypto) has C and assembly, which the `cc` crate compiles for
# the musl target with Debian's musl-gcc (musl-tools: gcc with musl's headers).
MUSL_CC  := CC_$(subst -,_,$(MUSL))=musl-gcc
# The owner of the tables: migrations run as this role (see migrations/roles.psql).
OWNER_ROLE ?= cofrap_owner
# The functions' role of the test database (make test, make bench): its name
# and password, generated once, as the secret files the functions read.
TEST_SECRETS := target/test-secrets
# Images: Docker when a Docker engine answers, else podman (installed if missing).
ENGINE   ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
# A classic watchdog binary to build the images with, offline, instead of the
# pinned image (the image test uses ../shared/tools/fwatchdog). Empty: the
# Dockerfile as it is, pulling its pinned images.
WATCHDOG ?=
# podman here: runc, cgroupfs, ulimits the sandbox allows, and image storage
# under target/podman (files written by the podman-conf target).
PODMAN_DIR := $(CURDIR)/target/podman
export CONTAINERS_CONF ?= $(PODMAN_DIR)/containers.conf
export CONTAINERS_STORAGE_CONF ?= $(PODMAN_DIR)/storage.conf
OFFLINE_CONTEXTS = $(if $(WATCHDOG),$(if $(filter podman,$(ENGINE)),--pull=never) \
                   --build-context watchdog=target/images/watchdog \
                   --build-context build=target/images/$$image)
PYTHON   := $(VENV)/bin/python
# apt-get needs root: use sudo when we are not root.
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# A throwaway cluster (pg_virtualenv -t: its own temporary folder) on a free
# port: pg_virtualenv would take 5432, and the socket of a second cluster
# on the machine (another checkout's make test) would clash on it.
THROWAWAY_PG := PGPORT=$$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') pg_virtualenv -t
# cofrap-admin, which computes what SQL cannot (the last step of db-migrate):
# built from this checkout, unless ADMIN names a binary (make test and make
# run pass the one they built).
ADMIN    ?= $(CARGO) run --quiet --locked --release --package cofrap-admin --
# The RustSec advisory database that `make lint` checks Cargo.lock against,
# offline: a snapshot of github.com/rustsec/advisory-db beside the checkout.
ADVISORY_DB ?= ../shared/advisory-db
# The checker, installed from crates.io when missing (see audit-deps).
CARGO_AUDIT_VERSION := 0.22.2
# Quiet psql: no NOTICEs ("already exists, skipping") from idempotent migrations.
# Every lock waited for at most a minute (a migration behind a held lock
# fails and can be run again, rather than wait for ever).
PSQL     := PGOPTIONS='--client-min-messages=warning -c lock_timeout=60s' psql -X -q -v ON_ERROR_STOP=1

.PHONY: help build static test lint db-migrate test-deps test-on-database clean \
        images push deploy secrets db up bench run pg-deps db-roles container-deps podman-conf \
        image-contexts admin admin-job tls-deps docs-deps db-postgres db-cnpg db-schema database-choice edge docker-deps musl-deps audit audit-deps \
        pooler-deps

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the function binaries (release, in target/release/)
	$(CARGO) build --release --locked --workspace --bins

static: musl-deps ## Fully static musl binaries of the functions and cofrap-admin in target/x86_64-unknown-linux-musl/release/ (images, empty-root test)
	@rustup target list --installed 2>/dev/null | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(MUSL_CC) RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(MUSL) \
	    $(addprefix --package ,$(IMAGES))

run: pg-deps tls-deps ## Run everything on this machine: PostgreSQL, the functions and the page (http://127.0.0.1:8080)
	$(CARGO) build --release --locked --workspace --bins
	dev/run

test: test-deps container-deps docker-deps static $(TEST_SECRETS)/db-credentials-password ## Run every test on a throwaway PostgreSQL (or on DATABASE_URL if set)
	$(CARGO) build --locked --workspace --bins
	@if [ -n "$$DATABASE_URL" ]; then \
	    $(MAKE) --no-print-directory test-on-database; \
	else \
	    echo "Starting a throwaway PostgreSQL cluster (pg_virtualenv)"; \
	    $(THROWAWAY_PG) sh -c '$(MAKE) --no-print-directory test-on-database'; \
	fi

# Runs inside the database environment that `test` set up, connected as its
# administrator: the roles, the schema as the owner role, then the tests, which
# run the functions as the functions' role.
test-on-database: $(TEST_SECRETS)/db-credentials-password
	SECRETS_DIR=$(CURDIR)/$(TEST_SECRETS) $(MAKE) --no-print-directory db-roles
	$(MAKE) --no-print-directory db-migrate ADMIN=$(CURDIR)/target/debug/cofrap-admin
	COFRAP_TEST_SECRETS=$(CURDIR)/$(TEST_SECRETS) COFRAP_TEST_PYTHON=$(CURDIR)/$(PYTHON) \
	    $(CARGO) test --locked --workspace --no-fail-fast

# The test database's functions' role, as secret files (kept between runs).
$(TEST_SECRETS)/db-credentials-password:
	@umask 077 && mkdir -p $(TEST_SECRETS)
	@umask 077 && printf '%s\n' cofrap_functions > $(TEST_SECRETS)/db-credentials-username
	@umask 077 && head -c 24 /dev/urandom | base64 | tr "+/" "-_" > $@

bench: test-deps container-deps static $(TEST_SECRETS)/db-credentials-password ## Measure each function as the watchdog runs it; writes BENCHMARKS.md (a few minutes)
	$(CARGO) build --release --locked --workspace --bins
	@export COFRAP_TEST_SECRETS=$(CURDIR)/$(TEST_SECRETS); if [ -n "$$DATABASE_URL" ]; then \
	    target/release/cofrap-bench; \
	else \
	    $(THROWAWAY_PG) target/release/cofrap-bench; \
	fi

lint: audit-deps ## rustfmt check, clippy with warnings as errors, and the RustSec advisories (make audit)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory audit

# Every crate version of Cargo.lock (LOCKFILE) against the advisory database
# ADVISORY_DB, as it is (--no-fetch: no network in CI): vulnerabilities, and
# unsound or unmaintained crates (--deny warnings), all fail. Exceptions, each
# with its reason: .cargo/audit.toml. Not checked: yanked versions (no
# advisory, and telling one needs the crates.io index, so the answer would
# depend on the network or on the machine's cache).
LOCKFILE ?= Cargo.lock
audit: audit-deps ## Check Cargo.lock against the RustSec advisories (ADVISORY_DB, offline; exceptions in .cargo/audit.toml)
	@test -d "$(ADVISORY_DB)/crates" || { \
	    echo "audit: no RustSec advisory database at ADVISORY_DB=$(ADVISORY_DB)" >&2; exit 2; }
	$(CARGO) audit --db "$(ADVISORY_DB)" --no-fetch --deny warnings --no-yanked --file "$(LOCKFILE)"

db-roles: ## Create or update the owner role and the functions' role (SECRETS_DIR holds its name and password), as an administrator
	@test -n "$$SECRETS_DIR" || { echo "db-roles: set SECRETS_DIR to the folder holding db-credentials-username and db-credentials-password" >&2; exit 2; }
	@$(PSQL) $${DATABASE_URL:+"$$DATABASE_URL"} -v owner=$(OWNER_ROLE) -v secrets_dir="$$SECRETS_DIR" \
	    -f migrations/roles.psql

db-migrate: ## Apply migrations/*.sql as the owner role, then cofrap-admin rekey, connected as an administrator (DATABASE_URL, or the PG* variables)
	@for migration in migrations/*.sql; do \
	    $(PSQL) $${DATABASE_URL:+"$$DATABASE_URL"} -c "SET ROLE $(OWNER_ROLE)" -f "$$migration" || exit 1; \
	done
	@$(ADMIN) rekey

# cofrap-admin on `make run`'s database (.local/, which dev/run creates),
# as its administrator (.local/admin's secret files), over TLS at
# verify-full against make run's local CA: make admin ARGS="show alice".
# Actions are written with the operator's name: COFRAP_OPERATOR, or the
# login name on this machine. LOCAL_DIR and PG_PORT as for dev/run.
LOCAL_DIR ?= .local
PG_PORT   ?= 5544
admin: ## Run cofrap-admin on make run's database: make admin ARGS="show alice" (cofrap-admin --help)
	@test -f "$(LOCAL_DIR)/admin/db-admin-password" || { \
	    echo "admin: no database of make run in $(LOCAL_DIR): run make run first" >&2; exit 2; }
	@test -f "$(LOCAL_DIR)/admin/db-ca-certificate" || { \
	    echo "admin: make run's database in $(LOCAL_DIR) has no certificate yet: run make run once" >&2; exit 2; }
	@env -u DATABASE_URL SECRETS_DIR="$(LOCAL_DIR)/admin" POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=$(PG_PORT) \
	    POSTGRES_DB=cofrap_db POSTGRES_SSLMODE=verify-full \
	    COFRAP_OPERATOR="$${COFRAP_OPERATOR:-$$(id -un)}" $(ADMIN) $(ARGS)

# cofrap-admin in the cluster, as a Job of its own (k8s/admin-job.yaml, run
# by k8s/admin-job.sh): make admin-job ARGS="show alice". Its image is
# $(REGISTRY)/cofrap-admin:$(TAG) (make push pushes it).
admin-job: ## Run cofrap-admin in the cluster as a Job: make admin-job ARGS="unlock alice" (COFRAP_OPERATOR, else your login name)
	@NAMESPACE=$(NAMESPACE) IMAGE=$(ADMIN_IMAGE) k8s/admin-job.sh $(ARGS)

# PostgreSQL: server, pg_virtualenv, psql.
pg-deps:
	@if ! command -v pg_virtualenv >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	    echo "Installing PostgreSQL from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql postgresql-common postgresql-client; \
	fi

# cargo-audit, pinned, built from crates.io once (some minutes); the binary
# scanner (a default feature) is left out: only Cargo.lock is read.
audit-deps:
	@$(CARGO) install --list | grep -qx 'cargo-audit v$(CARGO_AUDIT_VERSION):' || { \
	    echo "Installing cargo-audit $(CARGO_AUDIT_VERSION) from crates.io"; \
	    $(CARGO) install --locked --no-default-features --version $(CARGO_AUDIT_VERSION) cargo-audit; }

# musl-gcc, the C compiler of the static musl build (see MUSL_CC).
musl-deps:
	@if ! command -v musl-gcc >/dev/null; then \
	    echo "Installing musl-tools from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq musl-tools; \
	fi

# Chromium and its WebDriver, for the end-to-end test of the page.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	    echo "Installing Chromium and chromedriver from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# axe-core, the accessibility engine the page's browser test runs in
# Chromium: from the npm registry, at the version tests/package-lock.json
# pins, into target/npm (npm from Debian's packages when missing).
AXE := target/npm/node_modules/axe-core/axe.min.js
$(AXE): tests/package.json tests/package-lock.json
	@command -v npm >/dev/null || { echo "Installing npm from Debian's packages"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	@mkdir -p target/npm && cp tests/package.json tests/package-lock.json target/npm/
	cd target/npm && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# podman, buildah and runc for the image test and `make images` without Docker.
container-deps:
	@if ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v runc >/dev/null; then \
	    echo "Installing podman, buildah and runc from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman buildah runc; \
	fi

# Docker's engine (dockerd, containerd, the docker client) and Docker's
# registry, for the push test. Only what is missing (a machine with Docker's
# own packages, docker-ce, which conflicts with docker.io, keeps them), and
# without their recommendations (needrestart would change how apt upgrades
# this machine). On a machine with systemd, Debian's packages also enable
# and start their system services; the test starts daemons of its own and
# never uses those.
docker-deps:
	@packages=; \
	{ command -v dockerd && command -v containerd; } >/dev/null || packages=docker.io; \
	command -v docker-registry >/dev/null || packages="$$packages docker-registry"; \
	if [ -n "$$packages" ]; then \
	    echo Installing $$packages "from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$packages; \
	fi

# podman's configuration for this build: the runc runtime and cgroupfs (crun
# and systemd cgroups fail in sandboxes), ulimits a sandbox allows, and the
# image storage in target/podman/.
podman-conf:
	@mkdir -p $(PODMAN_DIR)
	@printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]' \
	    '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' 'events_logger = "file"' \
	    > $(PODMAN_DIR)/containers.conf
	@printf '%s\n' '[storage]' 'driver = "overlay"' 'graphroot = "$(PODMAN_DIR)/storage"' \
	    'runroot = "$(PODMAN_DIR)/run"' > $(PODMAN_DIR)/storage.conf

# Offline image builds (WATCHDOG set): the two stages that need registry
# images are replaced by folders. target/images/watchdog holds /fwatchdog;
# target/images/<function>/ holds out/usr/bin/<function> and out/tmp, as the
# Dockerfile's build stage leaves them.
image-contexts: static
	@test -f "$(WATCHDOG)" || { echo "WATCHDOG=$(WATCHDOG): no such file" >&2; exit 2; }
	@rm -rf target/images && mkdir -p target/images/watchdog
	@install -m 0555 "$(WATCHDOG)" target/images/watchdog/fwatchdog
	@for function in $(FUNCTIONS); do \
	    install -D -m 0555 target/$(MUSL)/release/$$function target/images/$$function/out/usr/bin/$$function && \
	    install -d -m 1777 target/images/$$function/out/tmp || exit 1; \
	done
	@install -D -m 0555 target/$(MUSL)/release/cofrap-admin target/images/cofrap-admin/out/usr/bin/cofrap-admin

# openssl, which tests/tls.rs uses to make a CA and the server's certificate.
tls-deps:
	@if ! command -v openssl >/dev/null; then \
	    echo "Installing openssl from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssl; \
	fi

# What the docs' examples use beside the functions (curl, jq, zbarimg to
# read a QR code, oathtool to compute a TOTP code): tests/roles.rs runs the
# examples against make run.
docs-deps:
	@packages=; \
	for tool in curl:curl jq:jq zbarimg:zbar-tools oathtool:oathtool; do \
	    command -v $${tool%%:*} >/dev/null || packages="$$packages $${tool#*:}"; \
	done; \
	if [ -n "$$packages" ]; then \
	    echo Installing$$packages "from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$packages; \
	fi

# PgBouncer, the connection pooler tests/pooler.rs starts in front of the
# test database (Debian's 1.18, as measured in production-like runs). On a
# machine with an init system, the package also starts its own service on
# port 6432; the tests start PgBouncers of their own and never use it.
pooler-deps:
	@if ! command -v pgbouncer >/dev/null && ! test -x /usr/sbin/pgbouncer; then \
	    echo "Installing pgbouncer from Debian's packages"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends pgbouncer; \
	fi

# Everything the tests use: PostgreSQL, PgBouncer, Chromium and axe-core, openssl, cargo-audit, the Python peers of the parity tests, the docs examples' tools.
test-deps: pg-deps pooler-deps browser-deps $(AXE) tls-deps audit-deps $(PYTHON) docs-deps

$(PYTHON): tests/requirements.txt
	@python3 -m venv --help >/dev/null 2>&1 || { \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3 python3-venv; }
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# The Dockerfile of each image: the functions', or cofrap-admin's.
DOCKERFILE_OF = $$([ $$image = cofrap-admin ] && echo dockerfiles/admin.Dockerfile || echo dockerfiles/Dockerfile)

images: ## Build the function images and cofrap-admin's for this machine's platform (Docker, else podman; WATCHDOG=<file>: offline)
	@if [ "$(ENGINE)" = podman ]; then $(MAKE) --no-print-directory container-deps podman-conf; fi
	@if [ -n "$(WATCHDOG)" ]; then $(MAKE) --no-print-directory image-contexts; fi
	@for image in $(IMAGES); do \
	    echo "Building $(REGISTRY)/$$image:$(TAG) with $(ENGINE)"; \
	    $(ENGINE) build $(OFFLINE_CONTEXTS) \
	        --build-arg FUNCTION=$$image -f $(DOCKERFILE_OF) \
	        -t $(REGISTRY)/$$image:$(TAG) . || exit 1; \
	done
	@if [ "$(ENGINE)" = podman ]; then podman image prune --force >/dev/null; fi

# make push: each image is pushed as $(REGISTRY)/<image>:$(TAG), then
# listed by digest ($(REGISTRY)/<image>@sha256:...), the reference that
# pins exactly what was pushed. Multi-arch with Docker buildx; otherwise (no
# buildx, podman, or WATCHDOG set: offline) the images `make images` builds
# for this machine's platform.
push: ## Build and push the images, cofrap-admin's too (multi-arch with Docker buildx, else this platform); prints their digests
	@set -o pipefail; digests=$$(mktemp -d) && trap 'rm -rf "$$digests"' EXIT && \
	if [ "$(ENGINE)" = podman ]; then \
	    $(MAKE) --no-print-directory images && \
	    for image in $(IMAGES); do \
	        echo "Pushing $(REGISTRY)/$$image:$(TAG) with podman" && \
	        podman push --quiet --digestfile "$$digests/$$image" $(REGISTRY)/$$image:$(TAG) || exit 1; \
	    done; \
	elif [ -z "$(WATCHDOG)" ] && docker buildx version >/dev/null 2>&1; then \
	    for image in $(IMAGES); do \
	        docker buildx build --platform $(PLATFORMS) --build-arg FUNCTION=$$image \
	            -f $(DOCKERFILE_OF) -t $(REGISTRY)/$$image:$(TAG) \
	            --metadata-file "$$digests/$$image.json" --push . && \
	        sed -n 's/.*"containerimage\.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' \
	            "$$digests/$$image.json" > "$$digests/$$image" || exit 1; \
	    done; \
	else \
	    $(MAKE) --no-print-directory images && \
	    for image in $(IMAGES); do \
	        docker push $(REGISTRY)/$$image:$(TAG) | tee "$$digests/$$image.log" && \
	        sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' \
	            "$$digests/$$image.log" > "$$digests/$$image" || exit 1; \
	    done; \
	fi && \
	echo "Pushed, by digest:" && \
	for image in $(IMAGES); do \
	    digest=$$(cat "$$digests/$$image") && \
	    case "$$digest" in \
	        sha256:*) echo "$(REGISTRY)/$$image@$$digest" ;; \
	        *) echo "make push: no digest for $(REGISTRY)/$$image:$(TAG)" >&2; exit 1 ;; \
	    esac; \
	done

# Refuses a DATABASE that is neither postgres nor cnpg.
database-choice:
	@test -n "$(DB_HOST)" || { echo "DATABASE=$(DATABASE): choose postgres (the default) or cnpg" >&2; exit 2; }

deploy: database-choice ## Deploy the functions to OpenFaaS (faas-cli deploy -f stack.yaml), on DATABASE=postgres|cnpg
	REGISTRY=$(REGISTRY) TAG=$(TAG) POSTGRES_HOST=$(DB_HOST) POSTGRES_SSLMODE=$(DB_SSLMODE) \
	    faas-cli deploy -f stack.yaml

secrets: ## Create the secrets in openfaas-fn with generated values (existing ones are kept)
	NAMESPACE=$(NAMESPACE) k8s-secrets/create-secrets.sh

db: database-choice ## Deploy the database (DATABASE=postgres, the default, or cnpg) in openfaas-fn, then the roles and the schema (a Job)
	$(MAKE) --no-print-directory db-$(DATABASE) db-schema

# The single-pod database, and an empty db-ca-certificate (it has no TLS).
db-postgres:
	kubectl apply -f k8s/postgres.yaml
	NAMESPACE=$(NAMESPACE) k8s-secrets/database-secrets.sh postgres
	kubectl -n $(NAMESPACE) rollout status statefulset/postgres --timeout=300s

# CloudNativePG (its operator and Barman Cloud plugin installed by the
# cluster's administrator): the superuser's basic-auth secret from db-admin-*,
# the resources of k8s/cnpg/, then the certificate of the operator's CA (only
# the certificate) into db-ca-certificate once the cluster is ready.
db-cnpg:
	@if grep -q REPLACE-ME k8s/cnpg/backup.yaml; then \
	    echo "k8s/cnpg/backup.yaml: set the object store (REPLACE-ME) first, see docs/OPERATIONS.md" >&2; exit 2; fi
	NAMESPACE=$(NAMESPACE) k8s-secrets/database-secrets.sh superuser
	kubectl apply -f k8s/cnpg/
	kubectl -n $(NAMESPACE) wait --for=condition=Ready cluster/cofrap-db --timeout=900s
	NAMESPACE=$(NAMESPACE) k8s-secrets/database-secrets.sh ca

# The roles and the schema: migrations/ as the ConfigMap cofrap-migrations,
# where the database is as the ConfigMap cofrap-database, then the Job (SQL,
# then cofrap-admin rekey), and the CronJob that prunes old account events.
# The manifests name cofrap-admin's default image; the one of REGISTRY and
# TAG (which make push pushed) replaces it on the way.
ADMIN_IMAGE = $(REGISTRY)/cofrap-admin:$(TAG)
WITH_ADMIN_IMAGE = sed 's|image: ghcr.io/cofrap/cofrap-admin:latest$$|image: $(ADMIN_IMAGE)|'
db-schema:
	kubectl -n $(NAMESPACE) create configmap cofrap-migrations --from-file=migrations/ \
	    --dry-run=client -o yaml | kubectl apply -f -
	kubectl -n $(NAMESPACE) create configmap cofrap-database --from-literal=PGHOST=$(MIGRATE_HOST) \
	    --from-literal=PGSSLMODE=$(DB_SSLMODE) \
	    --dry-run=client -o yaml | kubectl apply -f -
	kubectl -n $(NAMESPACE) delete job cofrap-db-migrate --ignore-not-found
	$(WITH_ADMIN_IMAGE) k8s/db-migrate-job.yaml | kubectl apply -f -
	kubectl -n $(NAMESPACE) wait --for=condition=complete job/cofrap-db-migrate --timeout=300s
	$(WITH_ADMIN_IMAGE) k8s/events-prune-cronjob.yaml | kubectl apply -f -

edge: ## The edge in front of the gateway (k8s/edge/): Gateway API route and headers, Envoy Gateway's body and rate limits
	kubectl apply -f k8s/edge/

up: database-choice secrets push db deploy ## Everything, in order: secrets, images, database and schema, functions (DATABASE=postgres|cnpg)

clean: ## Remove build outputs and the test virtual environment
	$(CARGO) clean
	rm -rf $(VENV) build
