# Avatar Platform — every command sets up what it needs (idempotent; a second run reuses it).
#   make run    set up tools, PostgreSQL+pgvector (and Redis if any), migrate, serve on :8000
#   make test   set up everything the tests need (Redis included) and run every test

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
DATA_DIR ?= .data
export DATA_DIR
CARGO ?= cargo
BIN := target/debug/avatar-platform
# Loads the service URLs that scripts/services.sh wrote.
WITH_SERVICES := set -a; . $(DATA_DIR)/services.env; set +a;

.PHONY: help setup tools embedder services services-test run dev worker migrate makemigration \
        openapi build test test-unit test-int lint fmt bench bench-tools eval faults fuzz clean \
        services-down

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

tools: ## install build tools (mold linker) when missing
	@scripts/ensure-tools.sh

services: ## start PostgreSQL+pgvector (and Redis when available)
	@scripts/services.sh up

services-test: ## as services, and make sure a real Redis runs
	@scripts/services.sh up --require-redis

services-down: ## stop the services this project started
	@scripts/services.sh down

embedder: ## install the local embedding model and ONNX Runtime into .tools/embedder (once)
	@scripts/embedder.sh

setup: tools services embedder ## tools, services and the local embedding model

build: tools ## build the binary (debug)
	$(CARGO) build --bin avatar-platform

run: setup build ## serve the platform on http://127.0.0.1:8000 with embedded defaults
	@$(WITH_SERVICES) $(BIN) migrate up
	@$(WITH_SERVICES) $(BIN) admin bootstrap
	@echo "Avatar Platform: http://127.0.0.1:8000  (API docs: http://127.0.0.1:8000/docs/, health: /health/ready)"
	@$(WITH_SERVICES) exec $(BIN) serve

dev: setup build ## like run, with debug logs
	@$(WITH_SERVICES) RUST_LOG=$${RUST_LOG:-debug,sqlx=info,hyper=info} exec $(BIN) serve

worker: setup build ## job workers only (scale-out)
	@$(WITH_SERVICES) exec $(BIN) worker

migrate: setup build ## apply pending migrations (ARGS="down --steps 1" / ARGS=status)
	@$(WITH_SERVICES) $(BIN) migrate $${ARGS:-up}

makemigration: ## new migration file: make makemigration NAME=module_action
	@scripts/new-migration.sh "$(NAME)"

openapi: build ## print the OpenAPI document
	@$(BIN) openapi

# Benchmarks are not tests (`make bench` runs them in release): --lib --bins --tests only.
test: tools services-test embedder ## every test: unit and integration, against real services
	@$(WITH_SERVICES) $(CARGO) test --workspace --lib --bins --tests --no-fail-fast

test-unit: tools embedder ## fast tests that need no server
	$(CARGO) test --lib --test unit

test-int: tools services-test embedder ## integration tests only
	@$(WITH_SERVICES) $(CARGO) test --test integration --no-fail-fast

lint: ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

bench-tools: ## install the benchmarks' tools (wrk) when missing
	@scripts/ensure-tools.sh --bench

eval: tools services-test embedder ## retrieval evaluation over the real fixtures (results in docs/retrieval.md)
	@$(WITH_SERVICES) $(CARGO) bench --bench eval

bench: tools bench-tools services-test embedder ## benchmarks (results in docs/benchmarks.md)
	@$(WITH_SERVICES) $(CARGO) bench --bench platform
	@$(WITH_SERVICES) $(CARGO) bench --bench auth_read
	@$(WITH_SERVICES) $(CARGO) bench --bench ingestion
	@$(WITH_SERVICES) $(CARGO) bench --bench embedding
	@$(WITH_SERVICES) $(CARGO) bench --bench retrieval
	@$(WITH_SERVICES) $(CARGO) bench --bench chat
	@$(WITH_SERVICES) $(CARGO) bench --bench billing
	@$(WITH_SERVICES) $(CARGO) bench --bench analytics
	@$(WITH_SERVICES) $(CARGO) bench --bench telegram

# The fault tests at full size, one at a time: kill -9 during the ingestion of FAULTS_DOCUMENTS
# (default 50) documents, two servers and a worker sharing them, the outages under load, the
# LLM's and Telegram's failures, the lifecycle races. `make test` runs them small.
faults: tools services-test embedder ## the long fault runs (docs/reliability.md)
	@$(WITH_SERVICES) FAULTS_DOCUMENTS=$${FAULTS_DOCUMENTS:-50} $(CARGO) test --test integration \
		--no-fail-fast -- --test-threads=1 --nocapture faults:: outages:: llm_faults:: races:: \
		telegram::telegram_failing telegram::long_answers

# Not in `make test` nor CI: each target runs FUZZ_SECONDS (default 60); FUZZ_TARGETS picks some.
fuzz: tools ## fuzz the parsers of untrusted input for a bounded time (scripts/fuzz.sh)
	@scripts/fuzz.sh

clean: services-down ## stop services, remove build output and local data
	$(CARGO) clean
	rm -rf $(DATA_DIR) .tools
