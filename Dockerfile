# syntax=docker/dockerfile:1
# The AppTopology operator image.
#   docker build -t ghcr.io/apptopology/apptopology-operator:0.1.0 .
# Runs as UID/GID 65532 with nothing writable but what the pod mounts (deploy/ mounts /tmp);
# ENTRYPOINT is the `apptopology` CLI, so `docker run IMAGE validate -f -` works as well as `run`.

# --- builder: a virtual environment with the pinned dependencies and the project's wheel ---------------
FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/apptopology \
    PATH=/opt/apptopology/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/apptopology

# Dependencies first: this layer is rebuilt only when the pins change.
COPY deploy/image/requirements.txt ./requirements.txt
RUN pip install --no-cache-dir --requirement requirements.txt

# Then the project (pip builds its wheel and installs it); `pip check` fails on a missing dependency.
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
RUN pip install --no-cache-dir --no-deps . \
    && pip check

# --- runtime: the same base, the virtual environment, a non-root user -------------------------------------
FROM python:3.11.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="apptopology-operator" \
      org.opencontainers.image.description="Declare an application's tiers and flows once; get least-privilege Kubernetes NetworkPolicies." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11.11-slim-bookworm"

RUN groupadd --system --gid 65532 apptopology \
    && useradd --system --no-log-init --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin apptopology

# Owned by root and read-only for the operator.
COPY --from=builder /opt/apptopology /opt/apptopology

ENV PATH=/opt/apptopology/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 65532:65532
# Liveness endpoint of `apptopology run` (http://0.0.0.0:8080/healthz).
EXPOSE 8080
ENTRYPOINT ["apptopology"]
CMD ["run"]
