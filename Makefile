# tradepipe: the two commands of the README's Quick start are `make demo` and `make test`.
#
#   make venv         .venv with Python 3.11: the pinned, hashed requirements/test.txt
#                     (`pip install --require-hashes`), then the package itself (`--no-deps -e .`);
#                     again only when pyproject.toml or the lock changes
#   make lock         regenerate the lock files in requirements/ from pyproject.toml (uv, with
#                     hashes; kept pins stay unless UPGRADE=1): producer, sink, local, test, lambda
#   make test         venv, local stack up, ruff, mypy, pytest, stack down (always); non-zero on
#                     any failure. PYTEST_ARGS="tests/smoke -x" narrows the pytest run.
#   make lint         ruff + mypy only
#   make fuzz         the parser's coverage-guided fuzz target (atheris) for FUZZ_SECONDS (600);
#                     corpus kept in fuzz/corpus/, crashing inputs in fuzz/ (make test runs
#                     it for 20 s: tests/fuzz)
#   make stack-up     start Kafka, MariaDB and S3 on 127.0.0.1 (scripts/stack; docs/testing.md,
#                     "Local stack"; it runs on the venv's Python, so venv first)
#   make stack-down   stop them
#   make lambda-zip   dist/lambda.zip for AWS Lambda (handler.handler; docs/lambda.md "Deployment")
#   make demo         replay the shipped sample through `tradepipe run` (broker, objects, SQLite,
#                     dashboard on http://127.0.0.1:8050/); Ctrl-C stops it (scripts/demo)
#   make test-deps    what the tests need beyond the venv: Debian's chromium (dashboard page test)
#   make deploy STACK=name BUCKET=trades-bucket [ARTIFACTS=bucket] [PARAMS='Key=Value ...']
#                     the whole pipeline on AWS (deploy/tradepipe.yaml; docs/deploy.md): builds
#                     dist/lambda.zip and dist/host-bundle.tar.gz, uploads them to ARTIFACTS
#                     (default BUCKET-artifacts), `aws cloudformation deploy`; again to update
#   make destroy STACK=name   delete the stack (the trades bucket is kept: docs/deploy.md)
#   make deploy-venv  .venv-deploy: awscli, cfn-lint, checkov, shellcheck (requirements/deploy.txt)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# ruff gets the source folders that exist (bench/ and lambda/ may hold no Python yet)
LINT_PATHS = $(wildcard daemon lambda tests bench scripts deploy)

.PHONY: help venv test test-deps lint stack-up stack-down stack-status demo

help:
	@sed -n '1,/^$$/p' $(MAKEFILE_LIST) | sed -n 's/^# \{0,1\}//p'

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/test.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Python 3.11 needed; PYTHON=... to choose)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# One lock per role that installs: the producer host (base), the sink host (base + sink), a
# host of every runtime command (`tradepipe run`, dashboard, migrate, load: base + local), the
# test/dev environment (every extra + test), the Lambda zip (requirements/lambda.in, for the
# function's runtime: CPython 3.11 on x86_64 manylinux, wheels only). The host locks are
# universal (markers, every file's hash); the test lock is resolved for CPython 3.11 on x86_64
# Linux (the machines `make test` and CI run on): a universal one would pick versions that have
# no 3.11 wheel there (atheris).
# `uv pip compile` keeps the pins already in a lock unless UPGRADE=1; tests/deps checks that the
# locks satisfy pyproject.toml.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
  --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
.PHONY: lock
lock:  # needs only uv (the venv's, from the test lock; else installed), not an up-to-date venv
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check uv; }
	$(UV_COMPILE) --universal pyproject.toml -o requirements/producer.txt
	$(UV_COMPILE) --universal pyproject.toml --extra sink -o requirements/sink.txt
	$(UV_COMPILE) --universal pyproject.toml --extra local -o requirements/local.txt
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_28 pyproject.toml --extra test \
	  -o requirements/test.txt
	$(UV_COMPILE) --python-platform x86_64-manylinux2014 --only-binary :all: \
	  requirements/lambda.in -o requirements/lambda.txt
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_28 requirements/deploy.in \
	  -o requirements/deploy.txt

# The deploy tools in a virtualenv of their own: their pinned trees (botocore, pydantic...)
# conflict with the test lock's (requirements/deploy.in says why).
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
.PHONY: deploy-venv host-bundle deploy destroy
deploy-venv: $(DEPLOY_STAMP)

$(DEPLOY_STAMP): requirements/deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r requirements/deploy.txt
	touch $@

host-bundle: venv
	$(BIN)/python deploy/bundle.py dist/host-bundle.tar.gz

ARTIFACTS ?= $(BUCKET)-artifacts
PARAMS ?=
deploy: venv deploy-venv
	@test -n "$(STACK)" && test -n "$(BUCKET)" || { \
	  echo "usage: make deploy STACK=name BUCKET=trades-bucket [ARTIFACTS=bucket] [PARAMS='Key=Value ...']" >&2; exit 2; }
	$(MAKE) --no-print-directory lambda-zip host-bundle
	PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" deploy/aws-deploy deploy $(STACK) $(BUCKET) $(ARTIFACTS) $(PARAMS)

destroy: deploy-venv
	@test -n "$(STACK)" || { echo "usage: make destroy STACK=name" >&2; exit 2; }
	PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" deploy/aws-deploy destroy $(STACK)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

# One recipe shell: the stack is stopped on every way out (failure, Ctrl-C), and the hold lets a
# concurrent `make test` in the same tree keep the stack until the last one is done.
# `python -m pytest` puts the repository root on sys.path, so tests import `tests.<pkg>.helpers`.
test: venv test-deps
	@set -uo pipefail; \
	hold="make-test-$$$$"; \
	trap 'scripts/stack down --release "$$hold"' EXIT; \
	scripts/stack up --fresh --hold "$$hold" --hold-pid $$$$ || exit 1; \
	failed=""; \
	echo "== ruff"; $(BIN)/ruff check $(LINT_PATHS) || failed="$$failed ruff"; \
	echo "== mypy"; $(BIN)/mypy || failed="$$failed mypy"; \
	echo "== pytest"; $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; \
	if [ $$rc -ne 0 ]; then failed="$$failed pytest(exit $$rc)"; fi; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: ruff, mypy and pytest passed"

stack-up: venv
	scripts/stack up

stack-down: venv
	scripts/stack down

stack-status: venv
	scripts/stack status

demo: venv
	@BIN=$(BIN) scripts/demo

# Headless Chromium for the dashboard's page test: Debian's package (no browser download);
# installed once, non-interactively, only when missing.
test-deps:
	@command -v chromium >/dev/null || { \
	  echo "make: installing chromium (apt-get) for the dashboard test"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: venv
	mkdir -p fuzz/corpus
	$(BIN)/python tests/fuzz/parser_target.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	  -rss_limit_mb=2048 -artifact_prefix=fuzz/ fuzz/corpus

.PHONY: lambda-zip
lambda-zip: venv
	$(BIN)/python lambda/build_zip.py dist/lambda.zip
