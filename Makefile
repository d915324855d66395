# The task runner: the README's two commands and CI (.ci/run) call these targets and nothing else.
#   make demo   install the package (release build) and run the main job
#   make test   install the test dependencies and run every test and lint
#   make dev    fast debug build into the venv for iteration; then `make pytest` etc.
#               (benchmarks need an optimised build: `maturin develop --release`)
#   make bench  run the benchmarks and print the comparison table

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test venv install install-test dev system-deps lint lint-rust lint-python \
        test-rust pytest bench

demo: install
	truthound-obs demo --require-native --overwrite

test: system-deps install-test lint test-rust pytest

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One optimised (release) build of the native core, installed with the runtime dependencies.
install: venv
	$(BIN)/python -m pip install --quiet '.[opentelemetry]'

install-test: venv
	$(BIN)/python -m pip install --quiet '.[test]'
	truthound-obs core --require-native

dev: venv
	$(BIN)/python -m pip install --quiet maturin
	maturin develop --quiet --extras test

system-deps:
	scripts/install-system-deps.sh

lint: lint-rust lint-python

lint-rust:
	cargo fmt --all --check
	cargo clippy --locked --all-targets --all-features -- -D warnings

lint-python:
	ruff check python tests benches
	ruff format --check python tests benches
	mypy
	python -m mypy.stubtest truthound.stores.observability._native --mypy-config-file pyproject.toml

test-rust:
	cargo test --locked

pytest:
	python -m pytest

bench:
	python -m pytest benches -o python_files="bench_*.py" --benchmark-enable --benchmark-only --benchmark-min-time=0.0002 \
		--benchmark-json=.benchmarks/latest.json -p no:cacheprovider
	python benches/table.py .benchmarks/latest.json
