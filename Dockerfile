# The AppTopology operator image. The build needs no network: every Python package comes from wheels
# made beforehand on a machine that reaches the package index (deploy/image/wheelhouse.sh), so an
# air-gapped builder only needs this checkout and a Python base image.
#   bash deploy/image/wheelhouse.sh
#   docker build -t ghcr.io/apptopology/apptopology-operator:0.2.0 .
# Runs as UID/GID 65532 with nothing writable but what the pod mounts (deploy/ mounts /tmp);
# ENTRYPOINT is the `apptopology` CLI, so `docker run IMAGE validate -f -` works as well as `run`.
# PYTHON_IMAGE may name any Debian-based image with Python 3.11 and its venv module (your registry's copy
# of python:3.11-slim-bookworm, or Debian's python3 and python3-venv: e2e/ builds one of those).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- builder: a virtual environment with the pinned dependencies and the project's wheel ---------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1 \
    PIP_NO_CACHE_DIR=1

RUN python3 -m venv /opt/apptopology

# Dependencies first: this layer is rebuilt only when the pins (or their wheels) change.
COPY deploy/image/requirements.txt /src/requirements.txt
COPY dist/wheelhouse/ /src/wheelhouse/
RUN /opt/apptopology/bin/pip install --no-cache-dir --no-index --find-links /src/wheelhouse \
        --requirement /src/requirements.txt

# Then the project's own wheel; `pip check` fails on a missing or conflicting dependency, and
COPY dist/project/ /src/project/
# pip and setuptools leave the environment after that: nothing installs at run time.
RUN /opt/apptopology/bin/pip install --no-cache-dir --no-index --no-deps /src/project/apptopology-*.whl \
    && /opt/apptopology/bin/pip check \
    && /opt/apptopology/bin/pip uninstall --yes --quiet pip setuptools

# --- runtime: the same base, the virtual environment, a non-root user -------------------------------------
FROM ${PYTHON_IMAGE}

RUN groupadd --system --gid 65532 apptopology \
    && useradd --system --no-log-init --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin apptopology

# Owned by root and read-only for the operator.
COPY --from=builder /opt/apptopology /opt/apptopology

ENV PATH=/opt/apptopology/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 65532:65532
# Liveness and readiness endpoint of `apptopology run` (http://0.0.0.0:8080/healthz).
EXPOSE 8080
ENTRYPOINT ["apptopology"]
CMD ["run"]

# Last, so that a new version or revision changes only the image's metadata, not a layer.
ARG PYTHON_IMAGE
ARG VERSION=0.2.0
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="apptopology-operator" \
      org.opencontainers.image.description="Declare an application's tiers and flows once; get least-privilege Kubernetes NetworkPolicies." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
