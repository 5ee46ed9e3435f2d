# Two commands on a new machine: `make run` (the whole system) and `make test` (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install protos bench bench-bulk lint typecheck clean db-url

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

protos/%_pb2.py: protos/%.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. $<

protos: protos/auth_pb2.py protos/billing_pb2.py protos/generation_pb2.py

install: $(STAMP) protos

run: install
	$(BIN)/fsg run

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench

bench-bulk: install
	$(BIN)/python -m bench.bulk_import

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy common services edge simulator devstack

db-url: install
	@$(BIN)/fsg db-url

clean:
	rm -rf $(VENV) protos/*_pb2*.py protos/*_pb2.pyi
