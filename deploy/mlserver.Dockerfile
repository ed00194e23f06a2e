# MLServer for deploy/compose.yaml, from the same pinned requirements as `make servers` and the
# real-server tests (tests/servers/requirements-mlserver.txt: MLServer 1.7.1, its scikit-learn
# runtime, and the scikit-learn servelab pins, so servelab's exported digits model loads).
#   docker build --file deploy/mlserver.Dockerfile --tag servelab-mlserver:local .
# The model comes from the `digits-model` service of the compose file, mounted at /models; the
# model settings are MLServer's MLSERVER_MODEL_* variables (no model-settings.json needed).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY tests/servers/requirements-mlserver.txt /tmp/requirements-mlserver.txt
RUN python -m venv /opt/mlserver \
    && /opt/mlserver/bin/python -m pip install --no-cache-dir --requirement /tmp/requirements-mlserver.txt

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/mlserver mlserver
COPY --from=build /opt/mlserver /opt/mlserver
# parallel_workers 0: inference in the server's own process, as examples/frameworks.toml runs it
ENV PATH=/opt/mlserver/bin:$PATH \
    MLSERVER_HOST=0.0.0.0 \
    MLSERVER_HTTP_PORT=8080 \
    MLSERVER_GRPC_PORT=8081 \
    MLSERVER_METRICS_PORT=8082 \
    MLSERVER_PARALLEL_WORKERS=0 \
    MLSERVER_MODEL_NAME=digits \
    MLSERVER_MODEL_IMPLEMENTATION=mlserver_sklearn.SKLearnModel \
    MLSERVER_MODEL_URI=/models/digits.joblib \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/mlserver
EXPOSE 8080 8081 8082
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/models/digits/ready', timeout=2)"]
CMD ["mlserver", "start", "/models"]
