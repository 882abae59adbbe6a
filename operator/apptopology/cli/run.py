"""run: the operator, against the kubeconfig's cluster or in-cluster config."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_FAIL, CommandError, add_kubeconfig
from .help import examples


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port, 0-65535, not {value}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from ..controller.main import Options, StartupError, run_operator  # kopf and kubernetes load only here

    try:
        return run_operator(
            Options(
                namespaces=args.namespace,
                liveness=args.liveness,
                verbose=args.verbose,
                workers=args.workers,
                resync=args.resync,
                metrics_port=args.metrics_port or None,
                leader_elect=args.leader_elect,
                lease_namespace=args.lease_namespace,
                facts_interval=args.facts_interval,
                kubeconfig=args.kubeconfig,
                context=args.context,
            )
        )
    except StartupError as exc:
        raise CommandError(str(exc), EXIT_FAIL) from None


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "run",
        help="run the operator against the kubeconfig's cluster or in-cluster config",
        description="Run the operator: watch AppTopologies (all namespaces, or those of -n) and keep their "
        "NetworkPolicies as declared. Fails at once, in one line, without a kubeconfig, when the API server "
        "cannot be reached or lacks the CRDs, or when a port it needs is taken.",
        epilog=examples(
            prog,
            ("run", "all namespaces, the kubeconfig's cluster (or in-cluster config in a pod)"),
            ("run -n shop --context dev --liveness http://127.0.0.1:8080/healthz", "one namespace of one cluster"),
            ("run --leader-elect --lease-namespace apptopology-system --metrics-port 8081", "as deployed"),
        ),
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    add_kubeconfig(p)
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="liveness endpoint (default http://0.0.0.0:8080/healthz; '' to disable)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=16,
        help="reconciles in parallel (default 16: a reconcile mostly waits for the API server)",
    )
    p.add_argument(
        "--resync",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="look at every topology again this often, from the cache (default 600)",
    )
    p.add_argument(
        "--facts-interval",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="re-read the DNS Services and the API server's endpoints this often, when a topology uses them "
        "(dns.discover, kubeAPI; default 30)",
    )
    p.add_argument(
        "--metrics-port", type=_port, default=0, metavar="PORT", help="serve Prometheus metrics on this port (0: off)"
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="compete for a Lease so that only one replica reconciles (for more than one replica)",
    )
    p.add_argument("--lease-namespace", metavar="NS", help="namespace of the Lease (default: $POD_NAMESPACE)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)
