# Shared by e2e/*.sh (sourced, not run): logging, the cache, and "build once per input hash".
# The cache lives beside the control plane's: ${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/e2e.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
E2E_CACHE="${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apptopology/e2e}"

log() { printf '%s [%s] %s\n' "${LOG_TAG:-e2e}" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "${LOG_TAG:-e2e}" "$*" >&2; exit 1; }

# hash_of FILE... : a short hash of files' contents (and, with -, of stdin).
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# recipe_of FILE : the text between "# --- recipe ---" and "# --- end recipe ---" in FILE, so that
# editing a comment elsewhere does not invalidate a cache.
recipe_of() { sed -n '/^# --- recipe ---$/,/^# --- end recipe ---$/p' "$1"; }

# with_lock DIR CMD... : run CMD holding DIR/.lock, so parallel runs build a thing once.
with_lock() {
  local dir="$1"; shift
  mkdir -p "$dir"
  (
    flock 9
    "$@"
  ) 9>"$dir/.lock"
}

# missing_caps [PID] : the capabilities the kernel has that PID's (default: this process's) bounding set
# lacks, as a hex mask; "0" when none.
missing_caps() {
  local last bnd
  last="$(cat /proc/sys/kernel/cap_last_cap)"
  bnd="$(awk '/^CapBnd:/ {print $2}' "/proc/${1:-self}/status")"
  printf '%x\n' $(( ((1 << (last + 1)) - 1) & ~0x$bnd ))
}
