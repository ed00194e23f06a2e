# servelab as an image: `servelab serve rest` by default (the digits model on 0.0.0.0:8000), and
# every other servelab command through the entrypoint (deploy/compose.yaml, deploy/k8s/).
#   docker build --tag servelab:local .
#   docker run --rm --publish 127.0.0.1:8000:8000 servelab:local
# tests/deploy/ lints this file (hadolint) and checks its port, probe path and command against
# the ones servelab really serves; .github/workflows/container.yml builds and runs it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: servelab's wheel, then a virtual environment with it and its dependencies (all
# published as wheels for CPython 3.11 on x86-64 and arm64: no compiler needed).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SERVELAB_CACHE_DIR=/opt/servelab/cache
WORKDIR /src
COPY pyproject.toml README.md ./
COPY targets ./targets
COPY loadtests ./loadtests
COPY reports ./reports
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/servelab \
    && /opt/servelab/bin/python -m pip install --no-cache-dir /dist/*.whl
# Train the built-in digits model once, here, so a container starts serving without fitting it
# (and a read-only root file system is enough at run time).
RUN /opt/servelab/bin/python -c "from targets.spec import load_model; load_model('digits')"

# Runtime stage: the same Python, the environment, no build files; a non-root user.
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/servelab servelab \
    && install -d -o servelab -g servelab /home/servelab/export
COPY --from=build /opt/servelab /opt/servelab
ENV PATH=/opt/servelab/bin:$PATH \
    SERVELAB_CACHE_DIR=/opt/servelab/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/servelab
EXPOSE 8000 50051
# Liveness of the REST target (GET /healthz answers 200 while the process serves); the gRPC
# service in deploy/compose.yaml replaces it with a gRPC health check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["servelab"]
CMD ["serve", "rest", "--host", "0.0.0.0", "--port", "8000", "--model", "digits"]
