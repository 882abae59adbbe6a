# Debian with the packet-filtering tools kube-proxy and kube-router shell out to, and a binary on top.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       iptables ipset iproute2 conntrack kmod procps \
    && rm -rf /var/lib/apt/lists/*
COPY bin/ /usr/local/bin/
