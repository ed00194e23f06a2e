# Bootstraps .venv on first use; every target works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check proto bench-middleware clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## the main job (until `servelab bench` lands: start every target and answer through each)
demo: $(STAMP)
	$(BIN)/servelab demo

## lint, format check, strict typing, then the whole test suite
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## regenerate the committed gRPC code (pinned grpcio-tools; tests/targets/test_grpc_proto_fresh.py checks it)
proto: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I . \
	    --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. targets/rpc/predict.proto
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I tests/targets/legacy \
	    --python_out=tests/targets/legacy --grpc_python_out=tests/targets/legacy \
	    tests/targets/legacy/predict_v1.proto

bench-middleware: $(STAMP)
	$(BIN)/python benchmarks/rest_middleware.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
