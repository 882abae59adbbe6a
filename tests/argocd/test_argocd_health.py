"""The Argo CD health check for AppTopologies, run under gopher-lua as Argo CD runs it.

``deploy/components/argocd-health/health.lua`` is the one copy of the script. Its cases are in Argo CD's
own layout (``resource_customizations/apptopology.io/AppTopology/health_test.yaml`` and full ``kubectl
get -o yaml`` testdata, made on the project's control plane, status written by the operator or through
the status subresource), so the directory plus ``health.lua`` can be proposed upstream as it is.

Every case runs twice: in the sandbox of an argocd-cm script (the one that matters: base and table
only) and with every library open (built-in scripts and Argo CD's own test suite). The expectations
are checked a third way, against the status contract written down here in Python.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from apptopology.api.spec import AppTopologySpec
from apptopology.api.status import ISOLATION_REASONS, AppTopologyStatus, Reason
from apptopology.api.validation import InvalidTopology
from apptopology.render.validation import parse_topology
from shared import ROOT

HEALTH_LUA = ROOT / "deploy" / "components" / "argocd-health" / "health.lua"
CUSTOMIZATION = Path(__file__).resolve().parent / "resource_customizations" / "apptopology.io" / "AppTopology"
TESTS: list[dict[str, Any]] = yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())["tests"]
MODES = {"argocd-cm": [], "open-libs": ["-open-libs"]}

Obj = dict[str, Any]


def load(input_path: str) -> Obj:
    (document,) = list(yaml.safe_load_all((CUSTOMIZATION / input_path).read_text()))
    return dict(document)


def run_harness(harness: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(harness), *args], capture_output=True, text=True, timeout=60)


def evaluate(harness: Path, script: Path, obj: Path, mode: str) -> dict[str, str]:
    out = run_harness(harness, *MODES[mode], "eval", str(script), str(obj))
    assert out.returncode == 0, out.stderr
    result: dict[str, str] = json.loads(out.stdout)
    return result


def ready_of(obj: Obj) -> Obj | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


# --- the cases ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", TESTS, ids=lambda t: Path(t["inputPath"]).stem)
def test_health(lua_harness: Path, case: dict[str, Any], mode: str) -> None:
    actual = evaluate(lua_harness, HEALTH_LUA, CUSTOMIZATION / case["inputPath"], mode)
    assert actual == case["healthStatus"]


def upstream_tree(root: Path) -> Path:
    """``resource_customizations/apptopology.io/AppTopology`` as it would be proposed to Argo CD."""
    target = root / "resource_customizations" / "apptopology.io" / "AppTopology"
    shutil.copytree(CUSTOMIZATION, target)
    shutil.copy(HEALTH_LUA, target / "health.lua")
    return root / "resource_customizations"


@pytest.mark.parametrize("mode", MODES)
def test_upstream_layout_passes_unchanged(lua_harness: Path, tmp_path: Path, mode: str) -> None:
    """The harness's ``test`` walks the tree like Argo CD's TestLuaHealthScript."""
    out = run_harness(lua_harness, *MODES[mode], "test", str(upstream_tree(tmp_path)))
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, [r for r in results if not r["pass"]] or out.stderr
    assert len(results) == len(TESTS)
    assert all(r["pass"] for r in results)


@pytest.mark.parametrize(
    ("field", "wrong"),
    [("status", "Healthy"), ("message", "Waiting for something else")],
)
def test_a_wrong_expectation_fails(lua_harness: Path, tmp_path: Path, field: str, wrong: str) -> None:
    tree = upstream_tree(tmp_path)
    spec_file = tree / "apptopology.io" / "AppTopology" / "health_test.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["tests"][0]["healthStatus"][field] = wrong
    spec_file.write_text(yaml.safe_dump(spec))
    out = run_harness(lua_harness, "test", str(tree))
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 1
    assert [r["inputPath"] for r in results if not r["pass"]] == [TESTS[0]["inputPath"]]


# --- the expectations follow the contract, and cover it -------------------------------------------------


def contract_health(obj: Obj) -> str:
    """The status contract, independently of the Lua: which health a topology has."""
    generation = obj["metadata"].get("generation")
    status = obj.get("status")
    ready = ready_of(obj)
    if not status or ready is None:
        return "Progressing"
    for observed in (status.get("observedGeneration"), ready.get("observedGeneration", generation)):
        if generation is not None and (observed is None or observed < generation):
            return "Progressing"
    if ready["status"] not in ("True", "False"):
        return "Progressing"
    if ready["status"] == "False" and ready.get("reason") != "DryRun":
        return "Degraded"
    if obj["spec"].get("enforcement", "Enforce") == "DryRun":
        return "Suspended"
    return "Healthy" if ready["status"] == "True" else "Degraded"


@pytest.mark.parametrize("case", TESTS, ids=lambda t: Path(t["inputPath"]).stem)
def test_expectation_follows_the_contract(case: dict[str, Any]) -> None:
    assert case["healthStatus"]["status"] == contract_health(load(case["inputPath"]))


def progressing_kind(obj: Obj) -> str:
    status = obj.get("status")
    ready = ready_of(obj)
    generation = obj["metadata"]["generation"]
    if not status:
        return "no status"
    if status.get("observedGeneration", 0) < generation:
        return "observedGeneration behind"
    if ready is None:
        return "no Ready condition"
    if ready.get("observedGeneration", generation) < generation:
        return "Ready's observedGeneration behind"
    return f"Ready {ready['status']}"


def test_cases_cover_every_status_and_reason() -> None:
    by_status: dict[str, list[Obj]] = {}
    for case in TESTS:
        by_status.setdefault(case["healthStatus"]["status"], []).append(load(case["inputPath"]))
    assert set(by_status) == {"Progressing", "Healthy", "Degraded", "Suspended"}
    assert {progressing_kind(o) for o in by_status["Progressing"]} == {
        "no status",
        "no Ready condition",
        "observedGeneration behind",
        "Ready's observedGeneration behind",
        "Ready Unknown",
    }
    degraded_reasons = {ready["reason"] for o in by_status["Degraded"] if (ready := ready_of(o))}
    # Every reason the operator sets today, and one it does not know yet (the check must not need it).
    assert degraded_reasons == {
        r.value for r in Reason if r not in (Reason.RECONCILED, Reason.DRY_RUN, *ISOLATION_REASONS)
    } | {"GuardrailViolation"}
    # spec.enforcement absent and explicit; DryRun that still degrades.
    assert {o["spec"].get("enforcement") for o in by_status["Healthy"]} == {None, "Enforce"}
    assert "DryRun" in {o["spec"].get("enforcement") for o in by_status["Degraded"]}
    assert {o["spec"]["enforcement"] for o in by_status["Suspended"]} == {"DryRun"}
    assert {r["status"] for o in by_status["Suspended"] if (r := ready_of(o))} == {"True", "False"}


# --- the testdata are real objects --------------------------------------------------------------------


def test_every_testdata_file_is_used_once() -> None:
    used = sorted(case["inputPath"] for case in TESTS)
    assert used == sorted(f"testdata/{p.name}" for p in (CUSTOMIZATION / "testdata").glob("*.yaml"))


@pytest.mark.parametrize("case", TESTS, ids=lambda t: Path(t["inputPath"]).stem)
def test_testdata_is_kubectl_get_output(case: dict[str, Any]) -> None:
    obj = load(case["inputPath"])
    assert (obj["apiVersion"], obj["kind"]) == ("apptopology.io/v1alpha1", "AppTopology")
    assert {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp"} <= set(obj["metadata"])
    assert "managedFields" not in obj["metadata"]  # kubectl get -o yaml leaves them out
    if "status" in obj:
        AppTopologyStatus.model_validate(obj["status"])  # the operator's own status model, extra=forbid
    document = {k: v for k, v in obj.items() if k != "status"}
    if "enforcement" not in AppTopologySpec.model_fields:  # until spec.enforcement exists
        document["spec"] = {k: v for k, v in obj["spec"].items() if k != "enforcement"}
    ready = ready_of(obj)
    if ready is not None and ready.get("reason") == "InvalidSpec":
        with pytest.raises(InvalidTopology) as info:
            parse_topology(document)
        assert str(info.value) == ready["message"]  # what the operator reports for this spec
    else:
        parse_topology(document)


# --- the harness is Argo CD's sandbox -----------------------------------------------------------------

PROBE = """
local os_module = require("os")
local names = {}
for name in pairs(os_module) do table.insert(names, name) end
table.sort(names)
return {
  status = "Healthy",
  message = type(string) .. " " .. type(math) .. " " .. type(os) .. " " .. type(io) .. " "
    .. type(table.insert) .. " " .. table.concat(names, ",") .. " " .. tostring(obj.metadata.generation),
}
"""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # argocd-cm: no string, math, io or global os; require("os") has only time and date.
        ("argocd-cm", "nil nil nil nil function date,time 1"),
        # Every library, as for built-in scripts; require("os") still gives Argo CD's safe os.
        ("open-libs", "table table table table function date,time 1"),
    ],
)
def test_sandbox_libraries(lua_harness: Path, tmp_path: Path, mode: str, expected: str) -> None:
    script = tmp_path / "probe.lua"
    script.write_text(PROBE)
    assert evaluate(lua_harness, script, CUSTOMIZATION / "testdata" / "healthy.yaml", mode) == {
        "status": "Healthy",
        "message": expected,
    }


@pytest.mark.parametrize(
    "body",
    ['string.lower("X")', '("X"):lower()', "math.floor(1.5)", "os.time()"],
)
def test_a_script_using_other_libraries_fails_in_argocd_cm(lua_harness: Path, tmp_path: Path, body: str) -> None:
    script = tmp_path / "uses.lua"
    script.write_text(f'return {{status = "Healthy", message = tostring({body})}}')
    obj = CUSTOMIZATION / "testdata" / "healthy.yaml"
    assert run_harness(lua_harness, "eval", str(script), str(obj)).returncode == 1
    assert run_harness(lua_harness, "-open-libs", "eval", str(script), str(obj)).returncode == 0


@pytest.mark.parametrize(
    ("script", "expected_out", "expected_err"),
    [
        ('return {status = "Fine"}', '{"status":"Unknown","message":"Lua returned an invalid health status"}', ""),
        ('return "Healthy"', "", "expect table output from Lua script, not string"),
        ("while true do end", "", "context deadline exceeded"),
    ],
    ids=["invalid-status", "not-a-table", "runaway"],
)
def test_results_are_handled_like_argo_cd(
    lua_harness: Path, tmp_path: Path, script: str, expected_out: str, expected_err: str
) -> None:
    path = tmp_path / "s.lua"
    path.write_text(script)
    out = run_harness(lua_harness, "eval", str(path), str(CUSTOMIZATION / "testdata" / "healthy.yaml"))
    assert out.stdout.strip() == expected_out
    assert expected_err in out.stderr
    assert out.returncode == (1 if expected_err else 0)


def lua_code(source: str) -> str:
    """The script without comments and string literals."""
    source = re.sub(r"--\[(=*)\[.*?\]\1\]", " ", source, flags=re.S)
    source = re.sub(r"--[^\n]*", " ", source)
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', '""', source)


def test_health_lua_names_no_library_beyond_base_and_table() -> None:
    """Beyond the cases: no path of the script can reach a library an argocd-cm script lacks."""
    code = lua_code(HEALTH_LUA.read_text())
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
    assert not names & {"string", "math", "os", "io", "debug", "coroutine", "require", "load", "loadstring"}
    assert not re.search(r"[\w\)\]\"]\s*:\s*[A-Za-z_]\w*\s*[\(\"{]", code), "method calls need the string library"
    assert "obj" in names


def test_harness_go_code_is_formatted(lua_harness: Path) -> None:
    """gofmt ships with Go, which building the harness proved is installed."""
    goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(
        [str(Path(goroot) / "bin" / "gofmt"), "-l", "."],
        cwd=Path(__file__).parent / "luaharness",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr
