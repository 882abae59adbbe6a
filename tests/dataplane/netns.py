"""Network namespaces as a node and its pods, and real TCP/UDP probes between them.

Only the standard library and ``ip`` (iproute2): nothing here is connected to the host's network
namespace, so no test packet can leave and the host firewall is never read or written.

Probes open their sockets inside a named namespace by switching the calling *thread* (``setns(2)``)
just for ``socket()``; a socket stays in the namespace it was created in, so one process can probe a
whole matrix from any namespace, in parallel threads, without forking.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

NETNS_DIR: Final = "/run/netns"
CLONE_NEWNET: Final = 0x40000000

Protocol = Literal["TCP", "UDP"]
Outcome = Literal["open", "refused", "timeout", "unreachable", "wrong-server"]
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace operation failed; the message says which command and why."""


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip [-n NETNS] ARGS`` and return its stdout; a failure raises NetnsError with ip's message."""
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def sysctl(netns: str, values: dict[str, int]) -> None:
    """Write sysctls (``{"net.ipv4.ip_forward": 1}``) inside ``netns``."""
    run_in(netns, ["sysctl", "-qw", *(f"{key}={value}" for key, value in values.items())])


def run_in(netns: str, cmd: list[str], input: str | None = None) -> str:
    """Run a command inside ``netns`` (``ip netns exec``); a failure raises NetnsError with its stderr."""
    done = subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True, input=input)
    if done.returncode != 0:
        raise NetnsError(f"in {netns}: {' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be used here (None when they can): the suite's skip reason."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs and iptables)"
    for tool in ("ip", "iptables", "iptables-save", "iptables-restore", "ipset", "sysctl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian packages: iproute2 iptables ipset procps)"
    probe = f"apptopology-probe-{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        ip("link", "add", "p0", "type", "veth", "peer", "name", "p1", netns=probe)
        ip("link", "add", "b0", "type", "bridge", netns=probe)
        run_in(probe, ["iptables", "-w", "-L", "FORWARD", "-n"])
        run_in(probe, ["ipset", "list", "-n"])
    except NetnsError as exc:
        return f"network namespaces lack what kube-router needs: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def delete(name: str) -> None:
    """Remove a namespace (its veths, routes, iptables rules and ipsets go with it); missing is fine."""
    if exists(name):
        ip("netns", "del", name)


# Switching a thread's namespace ---------------------------------------------------------------------

_fds: dict[str, int] = {}
_fds_lock = threading.Lock()
_home_fd: Final = os.open("/proc/self/ns/net", os.O_RDONLY)


def _fd(name: str) -> int:
    with _fds_lock:
        fd = _fds.get(name)
        if fd is None:
            try:
                fd = _fds[name] = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
            except FileNotFoundError:
                raise NetnsError(f"network namespace {name!r} does not exist") from None
        return fd


def forget(name: str) -> None:
    """Close the cached handle of a deleted namespace, so the kernel can free it."""
    with _fds_lock:
        fd = _fds.pop(name, None)
    if fd is not None:
        os.close(fd)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NetnsError(f"setns({what}): {os.strerror(code)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread is in ``name`` inside the block, and back in the process's own namespace after."""
    _setns(_fd(name), name)
    try:
        yield
    finally:
        _setns(_home_fd, "back")


def socket_in(name: str, kind: int) -> socket.socket:
    with entered(name):
        return socket.socket(socket.AF_INET, kind)


class InNamespace:
    """A worker thread that lives in one namespace: run blocking calls there (API clients, HTTP)."""

    def __init__(self, name: str):
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{name}", initializer=self._enter)

    def _enter(self) -> None:
        _setns(_fd(self.name), self.name)

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# Probes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What one connection attempt saw; ``open`` only when the expected server answered."""

    outcome: Outcome
    banner: str = ""

    @property
    def open(self) -> bool:
        return self.outcome == "open"


def connect(
    netns: str,
    address: str,
    port: int,
    protocol: Protocol,
    expect: str,
    timeout: float = 1.0,
    source_port: int = 0,
) -> Result:
    """One TCP connection (or UDP exchange) from inside ``netns``.

    The server answers with its endpoint's name; any other answer is ``wrong-server`` (a routing or
    addressing bug, never counted as open). Blocked traffic is REJECTed by kube-router (``refused``);
    a drop would be a ``timeout``; both count as blocked. UDP probes bind ``source_port`` when given:
    a fresh source port can never match a conntrack entry left by an earlier, allowed exchange.
    """
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    sock = socket_in(netns, kind)
    try:
        sock.settimeout(timeout)
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", source_port))
        sock.connect((address, port))
        if protocol == "UDP":
            sock.send(b"probe")
        data = sock.recv(256).decode(errors="replace").strip()
    except ConnectionRefusedError:
        return Result("refused")
    except TimeoutError:
        return Result("timeout")
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return Result("unreachable")
        raise NetnsError(f"probe {netns} -> {address}:{port}/{protocol}: {exc}") from exc
    finally:
        sock.close()
    if data != expect:
        return Result("wrong-server", data)
    return Result("open", data)
