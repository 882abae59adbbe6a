"""The operator's client keeps a connection per worker (the client's default of 5 per core is fewer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from apptopology.controller.kube import load_config


def test_the_connection_pool_fits_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    before = client.Configuration.get_default_copy()
    try:
        load_config(connections=40)
        assert client.Configuration.get_default_copy().connection_pool_maxsize == 40
        assert client.Configuration.get_default_copy().host == "https://127.0.0.1:6443"
    finally:
        client.Configuration.set_default(before)
