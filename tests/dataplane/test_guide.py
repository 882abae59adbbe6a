"""The guide's "Testing Network Policies" walkthrough, step by step, on real packets.

The guide (network-policies-guide.md) runs an nginx server and a busybox client in `netpol-test`,
checks `wget http://server` works, applies `deny-all` (ingress) and checks the connection now times out.
Here the server and the client are pods of the dataplane, the request goes to the server pod's IP (there
is no Service proxy on this node), and kube-router refuses blocked connections at once (ICMP
port-unreachable) instead of letting them time out: either way the connection does not open.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from apptopology.analysis.explain import explain_one
from apptopology.analysis.subject import subject
from apptopology.evaluator import Inventory, Namespace, Pod
from dataplane import Dataplane, Port

NS = "netpol-test"
DENY_ALL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: netpol-test
spec:
  podSelector: {}
  policyTypes:
    - Ingress
"""


@pytest.fixture()
def netpol_test(dataplane: Dataplane) -> Iterator[Dataplane]:
    # kubectl create namespace netpol-test
    dataplane.kubectl("create", "namespace", NS)
    yield dataplane
    dataplane.remove([k for k in dataplane.endpoints if k.startswith(f"{NS}/")])
    dataplane.kubectl("delete", "networkpolicy", "--all", "-n", NS, "--wait=false")
    dataplane.settle()


def test_guide_testing_network_policies(netpol_test: Dataplane) -> None:
    dp = netpol_test
    # kubectl run server --image=nginx -n netpol-test --port=80
    # kubectl run client --image=busybox -n netpol-test -- sleep 3600
    dp.add_pods([(NS, "server", {"run": "server"}, [Port(80)]), (NS, "client", {"run": "client"}, [])])
    dp.settle()

    # Before policy - should work
    before = dp.probe(f"{NS}/client", f"{NS}/server", 80)
    assert before.open and before.banner == f"{NS}/server"

    # Apply deny policy (the guide's manifest, as is)
    dp.kubectl("apply", "-f", "-", input=DENY_ALL)
    dp.settle()

    # After policy - should time out (here: refused at once, kube-router REJECTs)
    after = dp.probe(f"{NS}/client", f"{NS}/server", 80)
    assert not after.open and after.outcome in ("refused", "timeout")
    # The server is still there: the node reaches it (kube-router always lets a node reach its pods).
    assert dp.probe("node", f"{NS}/server", 80).open

    # And `apptopology explain` on the guide's policy agrees.
    inventory = Inventory(
        (Namespace(NS),),
        (Pod(NS, "server", {"run": "server"}), Pod(NS, "client", {"run": "client"})),
    )
    verdict = explain_one(subject([yaml.safe_load(DENY_ALL)], inventory), f"{NS}/client", f"{NS}/server", 80, "TCP")
    assert not verdict.allowed
    assert "deny-all" in str(verdict.ingress)
