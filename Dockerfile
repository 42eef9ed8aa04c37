# syntax=docker/dockerfile:1
# The Reynolds image: the orchestrator (`reynolds serve`, the default) and, with another command,
# the pool workers (`reynolds agent --type TYPE --concurrency N`).
#
#   docker build -t reynolds:0.1.0 .

# Build stage: compilers and pip caches stay here; only the virtualenv moves on.
FROM python:3.11.10-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# pyproject.toml names README.md as the long description, so the build needs both.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[postgres]"


FROM python:3.11.10-slim-bookworm

# tini runs as PID 1: it reaps the zombies of processes an action left and the server killed
# (orphans go to PID 1, and the server is not a reaper), and forwards SIGTERM to the server.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid, so volumes and Kubernetes' runAsUser agree on who owns the files.
RUN groupadd --system --gid 10001 reynolds \
 && useradd --system --uid 10001 --gid reynolds --home-dir /var/lib/reynolds \
      --shell /usr/sbin/nologin reynolds \
 && mkdir -p /var/lib/reynolds /workspace /app/config \
 && chown reynolds:reynolds /var/lib/reynolds /workspace

COPY --from=build /opt/venv /opt/venv
COPY config/agents.yaml /app/config/agents.yaml

# REYNOLDS_HOST: inside a container the server must answer on every interface; which host
# ports reach it is decided where the container is published (compose, Kubernetes Service).
# REYNOLDS_CONFIG_DIR: the installed package cannot find config/ beside its source tree.
# /workspace is the working directory, so shell actions' cwd stays inside it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REYNOLDS_HOST=0.0.0.0 \
    REYNOLDS_PORT=8080 \
    REYNOLDS_HOME=/var/lib/reynolds \
    REYNOLDS_CONFIG_DIR=/app/config \
    REYNOLDS_SECRETS_DIR=/run/secrets

WORKDIR /workspace
USER reynolds

EXPOSE 8080

# The slim image has no curl; urlopen raises on a refused connection and on 503 (unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('REYNOLDS_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["reynolds", "serve"]
