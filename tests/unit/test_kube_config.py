"""The operator's client keeps a connection per worker (the client's default of 5 per core is fewer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from apptopology.controller.kube import Kube, load_config
from apptopology.controller.reconciler import ApiError, Fenced


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


def test_a_fenced_client_sends_no_write_and_every_read() -> None:
    """The lease fence sits in front of the socket: a write is refused before anything is sent (no server
    listens here: a sent request would fail with a connection error instead), a read goes out."""
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # discard: nothing answers
    configuration.retries = False
    leading = [False]
    kube = Kube(client.ApiClient(configuration), may_write=lambda: leading[0])
    policy = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"podSelector": {}}}
    with pytest.raises(Fenced):
        kube.apply_policy(policy, None)
    with pytest.raises(Fenced):
        kube.apply_policy(policy, "uid", dry_run=True)
    with pytest.raises(Fenced):
        kube.delete_policy("n", "p", "uid")
    with pytest.raises(Fenced):
        kube.patch_status("n", "t", {}, "1")
    with pytest.raises(ApiError) as read:
        kube.get_policy("n", "p")
    assert read.value.status == 0  # sent, and nobody answered
    leading[0] = True
    with pytest.raises(ApiError) as write:
        kube.delete_policy("n", "p", "uid")
    assert write.value.status == 0
