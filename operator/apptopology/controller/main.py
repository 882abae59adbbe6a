"""Start the operator: load credentials, register the handlers, and hand control to Kopf."""

from __future__ import annotations

import logging

import kopf

from .kube import load_config


def run_operator(namespaces: list[str], liveness: str | None, verbose: bool = False) -> int:
    """Run until stopped. All namespaces unless ``namespaces`` limits the watch."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Kopf logs "Handler ... succeeded" for every watch event; our own reconcile lines say what changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_config()
    from . import handlers  # noqa: F401  (registers the Kopf handlers)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=liveness or None,
    )
    return 0
