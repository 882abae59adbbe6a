#!/usr/bin/env bash
# The Debian base every Debian-based e2e image starts from, made with debootstrap from the same
# Debian mirror the host's apt uses (no image registry), and imported into Docker:
#   apptopology.local/debian:bookworm-<key>   (the name is printed as the last line)
# Its /etc/apt sources are the host's, so `apt-get install` works in images built on it.
set -euo pipefail
LOG_TAG=rootfs
source "$(dirname "$0")/../lib.sh"

SUITE=bookworm
# The host's Debian mirror: the first deb URI of its apt sources (deb822 or one-line format).
mirror="$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}' || true
    awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null || true; } | awk '!/-security/' | head -1
)"
[[ -n "$mirror" ]] || die "no Debian mirror in /etc/apt/sources.list{,.d}"
key="$( { recipe_of "$0"; echo "$SUITE $mirror"; } | hash_of -)"
image="apptopology.local/debian:$SUITE-$key"
if docker image inspect "$image" >/dev/null 2>&1; then log "up to date: $image"; echo "$image"; exit 0; fi

build() {
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  local tmp start=$SECONDS
  tmp="$(mktemp -d "$E2E_CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
# --- recipe ---
  log "debootstrap --variant=minbase $SUITE from $mirror"
  debootstrap --variant=minbase "$SUITE" "$tmp/root" "$mirror" > "$tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  # The host's sources (main archive, updates, security), and no caches in the image.
  rm -f "$tmp/root/etc/apt/sources.list"
  if ls /etc/apt/sources.list.d/debian.sources >/dev/null 2>&1; then
    cp /etc/apt/sources.list.d/debian.sources "$tmp/root/etc/apt/sources.list.d/"
  else
    cp /etc/apt/sources.list "$tmp/root/etc/apt/sources.list"
  fi
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$tmp/root/etc/apt/apt.conf.d/90e2e"
  rm -rf "$tmp/root/var/cache/apt/archives"/*.deb "$tmp/root/var/lib/apt/lists"/*
  tar -C "$tmp/root" --numeric-owner -c . | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
# --- end recipe ---
  log "imported $image in $((SECONDS - start))s"
}
mkdir -p "$E2E_CACHE"
with_lock "$E2E_CACHE/rootfs" build
echo "$image"
