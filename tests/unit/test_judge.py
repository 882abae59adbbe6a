"""The write-path judge (tests/integration/judge.py) on audit records made up here: it can fail.

Each check is shown failing on the record of a known-bad write sequence (a naive write order, a dry-run
delete that deleted, an operator write landing on someone else's object, an end state that is not the
revision) and passing on the planner's own order.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

from judge import (
    OPERATOR_USER,
    AuditLog,
    Combo,
    Judge,
    Neighbourhood,
    Revision,
    Write,
    end_state,
    live_agrees,
    parse_entry,
    replay,
)
from scenarios import NEIGHBOUR, TOPOLOGY, Feature, Member, generate, intents, namespace_renders, refusable, renders

from apptopology.planner.transition import states, transition

NS = "home"
ADMIN = "admin"
UID = "topology-uid"

V1 = {
    "tiers": [
        {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
        {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
        {"name": "db", "podSelector": {"matchLabels": {"app": "db"}}},
    ],
    "flows": [
        {"from": {"anywhere": True}, "to": {"tier": "db"}, "ports": [{"port": 5432}]},
        {"from": {"tier": "web"}, "to": {"tier": "api"}, "ports": [{"port": 8080}]},
    ],
}
V2 = copy.deepcopy(V1)
V2["flows"][0] = {"from": {"tier": "api"}, "to": {"ipBlock": {"cidr": "0.0.0.0/0"}}, "ports": [{"port": 5432}]}


class Recorder:
    """Makes audit entries as the API server would log them, with etcd-like resourceVersions."""

    def __init__(self) -> None:
        self.rv = itertools.count(100)
        self.uids = itertools.count(1)
        self.live: dict[str, dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []

    def _entry(self, user: str, verb: str, name: str, code: int, uri: str, req: Any, resp: Any) -> None:
        self.entries.append(
            {
                "stage": "ResponseComplete",
                "auditID": f"a{len(self.entries)}",
                "verb": verb,
                "user": {"username": user},
                "requestURI": uri,
                "objectRef": {"resource": "networkpolicies", "namespace": NS, "name": name},
                "responseStatus": {"code": code},
                "requestObject": req,
                "responseObject": resp,
            }
        )

    def put(self, name: str, spec: dict[str, Any], user: str = OPERATOR_USER, owner: str | None = UID) -> None:
        live = self.live.get(name)
        meta: dict[str, Any] = {
            "name": name,
            "namespace": NS,
            "uid": live["metadata"]["uid"] if live else f"np-{next(self.uids)}",
            "resourceVersion": str(next(self.rv)),
        }
        if owner:
            meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "AppTopology"}]
        obj = {"kind": "NetworkPolicy", "metadata": meta, "spec": copy.deepcopy(spec)}
        self.live[name] = obj
        self._entry(user, "patch" if live else "create", name, 200, f"/np/{name}", obj, copy.deepcopy(obj))

    def delete(self, name: str, user: str = OPERATOR_USER, dry: bool = False, body_dry: bool | None = None) -> None:
        """``dry``: dryRun=All in the query; ``body_dry``: in the DeleteOptions body too (default: as the
        query), which is what the server follows."""
        body_dry = dry if body_dry is None else body_dry
        uid = self.live[name]["metadata"]["uid"]
        if not body_dry:
            next(self.rv)
            del self.live[name]
        uri = f"/np/{name}" + ("?dryRun=All" if dry else "")
        options = {"kind": "DeleteOptions", **({"dryRun": ["All"]} if body_dry else {})}
        status = {"kind": "Status", "status": "Success", "details": {"name": name, "uid": uid}}
        self._entry(user, "delete", name, 200, uri, options, status)

    def dry_apply(self, name: str, spec: dict[str, Any]) -> None:
        live = self.live[name]
        echo = {**copy.deepcopy(live), "spec": spec}
        self._entry(OPERATOR_USER, "patch", name, 200, f"/np/{name}?dryRun=All", echo, echo)

    def writes(self) -> list[Write]:
        out = []
        for i, entry in enumerate(self.entries):
            parsed = parse_entry(entry)
            assert parsed is not None
            w = parsed[1]
            out.append(Write(i, w.audit_id, w.user, w.verb, w.name, w.code, w.uri, w.request, w.response, w.ref_uid))
        return out


def specs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: p["spec"] for n, p in renders(spec, NS, UID).items()}


def judge_for(*revs: dict[str, Any]) -> Judge:
    bodies = [{"metadata": {"name": "app"}, "spec": r} for r in revs]
    revisions = [Revision("nothing", {})] + [Revision(f"v{i + 1}", renders(r, NS, UID)) for i, r in enumerate(revs)]
    return Judge(NS, bodies, revisions)


def created(rec: Recorder, spec: dict[str, Any]) -> None:
    for move in transition({}, specs(spec), guard_base="app"):
        assert move.spec is not None
        rec.put(move.name, move.spec)


def test_the_planned_order_passes_and_a_naive_one_is_outside_both() -> None:
    good, bad = Recorder(), Recorder()
    for rec in (good, bad):
        created(rec, V1)
    for move in transition(specs(V1), specs(V2), guard_base="app"):
        good.put(move.name, move.spec) if move.spec is not None else good.delete(move.name)
    for name, spec in sorted(specs(V2).items()):  # every policy as it is meant to be, in name order
        bad.put(name, spec)
    judge = judge_for(V1, V2)
    ok = replay(good.writes())
    assert ok.findings == [] and judge.judge(ok.states) == []
    found = judge.judge(replay(bad.writes()).states)
    assert found and found[0].kind == "outside", found
    assert "app.tier-api" in found[0].message  # the api's new egress with the db's old ingress


def test_going_back_to_the_old_revision_is_found_unless_the_chain_allows_it() -> None:
    rec = Recorder()
    created(rec, V1)
    old, new = specs(V1), specs(V2)
    forth = transition(old, new, guard_base="app")
    back = transition(states(old, forth)[-1], old, guard_base="app")
    for move in [*forth, *back]:
        rec.put(move.name, move.spec) if move.spec is not None else rec.delete(move.name)
    judge = judge_for(V1, V2)
    result = replay(rec.writes())
    found = judge.judge(result.states)
    assert found and "which the sequence had left" in found[0].message, found
    assert judge.judge(result.states, chain=[0, 1, 2, 1]) == []  # a refusal's restore: v1, v2, v1


def test_a_dry_run_delete_that_deleted_is_found_and_replayed_as_a_delete() -> None:
    v1, v2 = ({**v, "defaultDeny": {"scope": "Tiers"}} for v in (V1, V2))  # each tier isolated by its own policy
    rec = Recorder()
    created(rec, v1)
    rec.dry_apply("app.tier-api", specs(v2)["app.tier-api"])  # an echo: fine
    rec.delete("app.tier-db", dry=True)  # an honest dry run: fine
    assert replay(rec.writes()).findings == []
    judge = judge_for(v1, v2)
    assert judge.judge(replay(rec.writes()).states) == []
    rec.delete("app.tier-db", dry=True, body_dry=False)  # what Kube.delete_policy(dry_run=True) sends
    result = replay(rec.writes())
    assert [f.kind for f in result.findings] == ["dry-run-wrote"]
    assert "app.tier-db" not in result.end
    # and the state it left is judged: the db pods are isolated by nothing, open beyond v1 and v2
    found = judge.judge(result.states)
    assert [f.kind for f in found] == ["outside"] and "tier-db" in found[0].message, found


def test_an_operator_write_on_someone_elses_object_is_an_adoption() -> None:
    rec = Recorder()
    created(rec, V1)
    squatter = "app.guard-0123456789"
    rec.put(squatter, {"podSelector": {}, "policyTypes": ["Ingress"]}, user=ADMIN, owner=None)
    assert replay(rec.writes()).findings == []
    rec.put(squatter, {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]})
    result = replay(rec.writes())
    assert [f.kind for f in result.findings] == ["adopted"]
    # and the end state says the squatter was changed
    kinds = [f.message for f in end_state(result, UID, renders(V1, NS, UID), "v1")]
    assert any("someone else's" in k for k in kinds), kinds


def test_an_inconsistent_record_is_reported() -> None:
    rec = Recorder()
    created(rec, V1)
    rec.live.pop("app.tier-db")  # deleted by nobody the log knows
    rec.put("app.tier-db", specs(V1)["app.tier-db"])
    rec.entries[-1]["verb"] = "create"
    assert [f.kind for f in replay(rec.writes()).findings] == ["inconsistent"]


def test_end_state_and_live_agreement() -> None:
    rec = Recorder()
    created(rec, V1)
    result = replay(rec.writes())
    assert end_state(result, UID, renders(V1, NS, UID), "v1") == []
    assert [f.kind for f in end_state(result, UID, renders(V2, NS, UID), "v2")] == ["end-state"] * 2
    assert live_agrees(result, rec.live.values()) == []
    stale = copy.deepcopy(list(rec.live.values()))
    stale[0]["metadata"]["resourceVersion"] = "1"
    assert [f.kind for f in live_agrees(result, stale)] == ["live"]


def test_writes_apply_in_resource_version_order_not_log_order() -> None:
    """Two writers' log lines can interleave out of commit order; the resourceVersion is the commit order."""
    rec = Recorder()
    created(rec, V1)
    rec.put("app.tier-db", {**specs(V1)["app.tier-db"], "ingress": []})
    rec.put("app.tier-db", specs(V1)["app.tier-db"])
    rec.entries[-2], rec.entries[-1] = rec.entries[-1], rec.entries[-2]
    result = replay(rec.writes())
    assert result.findings == [] and result.end["app.tier-db"]["spec"] == specs(V1)["app.tier-db"]


def test_a_dry_run_answering_with_a_new_revision_wrote() -> None:
    rec = Recorder()
    created(rec, V1)
    rec.put("app.tier-db", {**specs(V1)["app.tier-db"], "ingress": []})
    rec.entries[-1]["requestURI"] += "?dryRun=All"
    result = replay(rec.writes())
    assert [f.kind for f in result.findings] == ["dry-run-wrote"] and "resourceVersion" in result.findings[0].message
    assert result.end["app.tier-db"]["spec"].get("ingress") == []


def test_the_audit_log_reader_keeps_followed_namespaces_and_skips_partial_lines(tmp_path: Path) -> None:
    rec = Recorder()
    created(rec, V1)
    path = tmp_path / "audit.log"
    other = {**rec.entries[0], "objectRef": {**rec.entries[0]["objectRef"], "namespace": "elsewhere"}}
    path.write_text("".join(json.dumps(e) + "\n" for e in [other, *rec.entries]) + '{"partial')
    log = AuditLog(path)
    log.follow(NS)
    assert len(log.writes(NS)) == len(rec.entries) and log.writes("elsewhere") == []
    with open(path, "a") as f:
        f.write('": 1}\n')  # the partial line completes: not a write, ignored
    assert len(log.writes(NS)) == len(rec.entries)


def test_scenarios_are_reproducible_and_refusals_spare_the_old_revision() -> None:
    assert generate(12345).describe() == generate(12345).describe()
    assert generate(12345).v2 == generate(12345).v2
    for seed in range(40):
        scenario = generate(seed)
        if scenario.feature is not None:
            assert scenario.feature in refusable(scenario.v1, scenario.v2)
    port = Feature("port", "ingress", "5432")
    assert port not in refusable(V1, V2)  # v1's db has it: refusing it would refuse v1's restore too


def test_a_read_between_a_write_and_the_next_delete_sees_the_object() -> None:
    """A delete's answer carries no revision: the replay puts it just after the write logged before it, so a
    LIST at that write's revision still holds the object, and one at any later revision does not."""
    rec = Recorder()
    created(rec, V1)
    last = max(int(p["metadata"]["resourceVersion"]) for p in rec.live.values())  # the write logged before
    rec.delete("app.tier-web")
    result = replay(rec.writes())
    assert "app.tier-web" in result.at(last) and "app.tier-web" not in result.at(last + 1)


# Several topologies and a guardrail (issue 20) -----------------------------------------------------------

NB_UID = "neighbour-uid"
RAIL = {"requiredDefaultDeny": {"scope": "Namespace"}}
MINE = {
    "defaultDeny": {"scope": "Tiers"},
    "tiers": [{"name": "web", "podSelector": {"matchLabels": {"app": "a-web"}}}],
    "flows": [{"from": {"anywhere": True}, "to": {"tier": "web"}, "ports": [{"port": 443}]}],
}
THEIRS = {
    "defaultDeny": {"scope": "Tiers"},
    "dns": {"enabled": False},
    "tiers": [{"name": "db", "podSelector": {"matchLabels": {"app": "b-db"}}}],
    "flows": [{"from": {"anywhere": True}, "to": {"tier": "db"}, "ports": [{"port": 5432}]}],
}


def members(on: bool, neighbour: bool = True) -> list[Member]:
    return [Member(TOPOLOGY, MINE, UID, on), *([Member(NEIGHBOUR, THEIRS, NB_UID, on)] if neighbour else [])]


def neighbourhood(rec: Recorder) -> tuple[Judge, Neighbourhood]:
    """The topology's judge (its policies against off and on, the neighbour's as they are) and the openings
    judge over the two moments, as tests/integration/drive.py builds them."""
    ours = {on: namespace_renders(members(on), RAIL, NS)[TOPOLOGY] for on in (False, True)}
    bodies = [{"metadata": {"name": TOPOLOGY}, "spec": MINE}, {"metadata": {"name": NEIGHBOUR}, "spec": THEIRS}]
    seen = [o for s in replay(rec.writes()).states for o in s.objects.values()]
    revisions = [Revision("nothing", {}), Revision("off", ours[False]), Revision("on", ours[True])]
    judge = Judge(NS, bodies, revisions, seen, owner_uid=UID)
    combos = {}
    for mine, theirs in itertools.product((None, False, True), repeat=2):  # each absent, without or with the rail
        group = [
            *([Member(TOPOLOGY, MINE, UID, mine)] if mine is not None else []),
            *([Member(NEIGHBOUR, THEIRS, NB_UID, theirs)] if theirs is not None else []),
        ]
        everyone = namespace_renders(group, RAIL, NS)
        policies = {n: p for objs in everyone.values() for n, p in objs.items()}
        combos[(mine, theirs)] = Combo(f"{mine}/{theirs}", tuple(intents(group, RAIL, NS)), policies)
    return judge, Neighbourhood(judge, combos)


def moved(rec: Recorder, before: dict[str, Any], after: dict[str, Any], owner: str) -> None:
    old = {n: p["spec"] for n, p in before.items()}
    new = {n: p["spec"] for n, p in after.items()}
    for move in transition(old, new, guard_base=owner):
        rec.put(move.name, move.spec, owner=owner) if move.spec is not None else rec.delete(move.name)


def test_a_guardrails_dns_for_every_pod_opening_the_neighbours_pods_is_found() -> None:
    """Issue 20, finding 1, as the judge sees it: the guardrail raises both topologies to scope Namespace;
    the operator must not write the topology's allow-dns selecting every pod (the neighbour's pods, whose
    own topology denies them DNS, would get it). The neighbour-safe order passes; that policy is an opening,
    and the topology's own judge (the neighbour's policies as they are) finds it outside both revisions."""
    rec = Recorder()
    off, on = namespace_renders(members(False), RAIL, NS), namespace_renders(members(True), RAIL, NS)
    assert f"{TOPOLOGY}.allow-dns" not in on[TOPOLOGY]  # neighbour-safe: DNS per tier
    moved(rec, {}, off[NEIGHBOUR], NB_UID)
    moved(rec, {}, off[TOPOLOGY], UID)
    moved(rec, off[NEIGHBOUR], on[NEIGHBOUR], NB_UID)
    moved(rec, off[TOPOLOGY], on[TOPOLOGY], UID)
    judge, openings = neighbourhood(rec)
    states = replay(rec.writes()).states
    assert judge.judge(states) == [] and openings.judge_states(states) == []
    assert openings.judged == len(states)
    # Rendered as if alone (the check of one topology only): N.allow-dns with podSelector {}.
    alone = namespace_renders(members(True, neighbour=False), RAIL, NS)[TOPOLOGY]
    dns = alone[f"{TOPOLOGY}.allow-dns"]
    assert dns["spec"]["podSelector"] == {}
    rec.put(dns["metadata"]["name"], dns["spec"], owner=UID)
    judge, openings = neighbourhood(rec)
    states = replay(rec.writes()).states
    found = openings.judge_states(states)
    assert [f.kind for f in found] == ["opened"], found
    assert f"{NEIGHBOUR}'s" in found[0].message and "UDP/53" in found[0].message, found[0].message
    outside = judge.judge(states)
    assert [f.kind for f in outside] == ["outside"] and "allow-dns" in outside[0].message, outside


def test_the_neighbours_policies_are_not_the_topologys_own() -> None:
    """Attributed by owner: the neighbour's policies, written by the same operator, are in the reference as
    they are (attributed to "the operator" as a whole they would be taken for the topology's), and the end
    state of one topology does not count the other's policies as orphans."""
    rec = Recorder()
    off = namespace_renders(members(False), RAIL, NS)
    moved(rec, {}, off[NEIGHBOUR], NB_UID)
    moved(rec, {}, off[TOPOLOGY], UID)
    judge, _ = neighbourhood(rec)
    states = replay(rec.writes()).states
    assert judge.judge(states) == []
    assert sorted(judge.ours(states[-1])) == sorted(off[TOPOLOGY])
    assert sorted(judge.others(states[-1])) == sorted(off[NEIGHBOUR])
    whole = Judge(NS, [{"metadata": {"name": TOPOLOGY}, "spec": MINE}], judge.revisions)
    assert sorted(whole.ours(states[-1])) == sorted({**off[TOPOLOGY], **off[NEIGHBOUR]})  # by "the operator"
    assert end_state(replay(rec.writes()), UID, off[TOPOLOGY], "off", also=[NB_UID]) == []
    assert [f.kind for f in end_state(replay(rec.writes()), UID, off[TOPOLOGY], "off")] == ["end-state"] * len(
        off[NEIGHBOUR]
    )
