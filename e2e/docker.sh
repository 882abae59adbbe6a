#!/usr/bin/env bash
# A Docker engine for the e2e cluster, and only what was needed to get one:
#   e2e/docker.sh up     use the running engine if there is one; else install docker.io (Debian) if dockerd
#                        is missing, start dockerd, and remember that we started it
#   e2e/docker.sh down   stop dockerd if (and only if) `up` started it
#   e2e/docker.sh env    print DOCKER_BUILDKIT=0|1 for this engine and client
# Host quirks are detected, not assumed:
#   * a capability bounding set smaller than the kernel's (seen: no CAP_SYS_RESOURCE) makes
#     `docker run --privileged` fail; dockerd we start then runs containers through docker/runc-capbnd,
#     which leaves out exactly the capabilities the host cannot grant. An engine we did not start cannot
#     be changed: then this says why kind will fail.
#   * no buildx plugin for the client: the legacy builder (DOCKER_BUILDKIT=0).
set -euo pipefail
LOG_TAG=docker
source "$(dirname "$0")/lib.sh"

STATE="${E2E_STATE:-/run/apptopology-e2e}"
PIDFILE="$STATE/dockerd.pid"

engine_ok() { timeout 20 docker info >/dev/null 2>&1; }

up() {
  if engine_ok; then
    log "using the running Docker engine ($(docker version -f '{{.Server.Version}}'))"
    local pid
    pid="$(pgrep -o -x dockerd || true)"
    if [[ -n "$pid" && "$(missing_caps "$pid")" != 0 ]] \
        && ! docker info -f '{{.DefaultRuntime}}' 2>/dev/null | grep -q capbnd; then
      log "WARNING: this dockerd's capability bounding set lacks $(missing_caps "$pid") (hex): kind's" \
          "--privileged nodes will fail; stop it and let e2e/docker.sh start one"
    fi
    return 0
  fi
  if ! command -v dockerd >/dev/null; then
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || die "no Docker engine, and no root/apt-get to install docker.io"
    log "installing docker.io (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
  fi
  mkdir -p "$STATE"
  local args=(--host unix:///var/run/docker.sock --pidfile "$STATE/dockerd.real.pid")
  local missing
  missing="$(missing_caps self)"
  if [[ "$missing" != 0 ]]; then
    log "capability bounding set lacks $missing (hex): containers run through docker/runc-capbnd"
    args+=(--add-runtime "capbnd=$E2E_DIR/docker/runc-capbnd" --default-runtime capbnd)
  fi
  log "starting dockerd (log: $STATE/dockerd.log)"
  setsid dockerd "${args[@]}" >"$STATE/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local i
  for i in $(seq 1 120); do
    engine_ok && { log "dockerd $(docker version -f '{{.Server.Version}}') is up (pid $(cat "$PIDFILE"))"; return 0; }
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.5
  done
  tail -20 "$STATE/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

down() {
  [[ -s "$PIDFILE" ]] || { log "dockerd was not started by e2e/docker.sh: leaving it alone"; return 0; }
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "dockerd still running after 30 s: SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$PIDFILE"
}

env_() {
  if docker buildx version >/dev/null 2>&1; then echo DOCKER_BUILDKIT=1; else echo DOCKER_BUILDKIT=0; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_ ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
