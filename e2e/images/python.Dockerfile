# A stand-in for python:3.11-slim-bookworm where no image registry is reachable: Debian bookworm's own
# Python 3.11 with venv (pip comes from the wheel Debian ships, so `python3 -m venv` needs no network).
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
