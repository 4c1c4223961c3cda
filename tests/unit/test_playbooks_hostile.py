"""Every operation playbook, in check mode, with bad extra vars, against a cluster that does not exist.

Each run must fail (rc != 0) with one clear message that starts with the variable or field at fault,
show no Python traceback, and create nothing: no podman container, volume or network labelled with
the cluster, no file in the controller's trove home. image_build is not an operation on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "e2e-surface-hostile"
LABEL = f"label=trove.dbaas/cluster={NAME}"
OPERATIONS = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml") if p.stem != "image_build")
NO_MEMBERS = f"metadata.name: cluster {NAME} has no members"
# What each playbook asks for first when a cluster document is all it gets.
FIRST = {
    "cluster_delete": f"confirm: pass -e confirm={NAME}",
    "member_replace": "member: pass -e member=",
    "restore": "source: (not given) is not a cluster with a backup repository",
}
ERROR = re.compile(r"^\[ERROR\]: Task failed: Action failed: (.*?)\nOrigin:", re.MULTILINE | re.DOTALL)

# (playbook, extra vars as JSON or None for no cluster document, what the message must start with)
CASES: list[tuple[str, dict | None, str]] = [
    # member_replace asks for the member first
    *[
        (
            playbook,
            None,
            "member: pass -e member=" if playbook == "member_replace" else "cluster_file: no cluster document given",
        )
        for playbook in OPERATIONS
    ],
    *[(playbook, {}, FIRST.get(playbook, NO_MEMBERS)) for playbook in OPERATIONS if playbook != "cluster_apply"],
    ("cluster_apply", {"cluster_file": "/nonexistent/cluster.yml"}, "cluster_file: no file /nonexistent/cluster.yml"),
    ("cluster_apply", {"cluster_file": 5}, "cluster_file: expected one line of text, got an integer 5"),
    # "spec": changes to the document's spec (a mapping is merged into it, anything else replaces it)
    ("cluster_apply", {"spec": {"members": 0}}, "spec.members: 0 is less than the minimum of 1"),
    ("cluster_apply", {"spec": "x"}, "spec: 'x' is not of type 'object'"),
    ("cluster_apply", {"spec": {"members": "two"}}, "spec.members: 'two' is not of type 'integer'"),
    ("cluster_apply", {"spec": {"users": [{"name": "app", "password": "x"}]}}, "spec.users[0].password"),
    ("cluster_apply", {"spec": {"engine": "oracle"}}, "spec.engine: 'oracle' is not one of"),
    ("cluster_delete", {"confirm": "other"}, f"confirm: pass -e confirm={NAME}"),
    ("cluster_delete", {"confirm": ["x"]}, "confirm: expected a name"),
    ("cluster_delete", {"confirm": NAME, "purge": "maybe"}, "purge: expected true or false, got a string 'maybe'"),
    ("switchover", {"target": "nope"}, NO_MEMBERS),
    ("switchover", {"target": ""}, NO_MEMBERS),  # a blank optional AWX answer is "not given"
    ("switchover", {"target": [1, 2]}, "target: expected a name"),
    ("switchover", {"target": "x; rm -rf /"}, "target: expected a name"),
    ("failover", {"force": "maybe"}, "force: expected true or false"),
    ("member_replace", {"member": "nope"}, f"member: nope is not a member of {NAME}; members: none"),
    ("member_replace", {"member": ""}, "member: pass -e member="),
    ("member_replace", {"member": {"a": 1}}, "member: expected a name"),
    ("rotate_credentials", {"users": "ghost"}, NO_MEMBERS),
    ("rotate_credentials", {"users": 5}, "users: expected names separated by commas"),
    ("rotate_credentials", {"users": "app,../x"}, "users: '../x' is not a name"),
    ("backup", {"type": "weekly"}, "type: 'weekly' is not allowed; allowed: diff, full, incr"),
    ("restore", {"source": "nope"}, "source: nope is not a cluster with a backup repository"),
    ("restore", {"source": "nope", "target_time": ["x"]}, "target_time: expected one line of text"),
    ("upgrade", {"type": 1}, "type: 1 is not allowed"),
]


def document(spec: object) -> dict:
    base = {"engine": "postgresql", "topology": "replicated", "members": 2}
    return {
        "apiVersion": "trove.dbaas/v1",
        "kind": "Cluster",
        "metadata": {"name": NAME},
        "spec": {**base, **spec} if isinstance(spec, dict) else spec,
    }


def run(case: tuple[str, dict | None, str], work: Path) -> subprocess.CompletedProcess:
    playbook, extra, _expected = case
    home = work / "home"
    env = dict(
        os.environ,
        TROVE_HOME=str(home),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        CONTAINERS_CONF="/var/lib/trove-dbaas/containers.conf",
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
    )
    args = [str(BIN / "ansible-playbook"), f"playbooks/{playbook}.yml", "--check"]
    if extra is not None:
        extra = dict(extra)
        if "cluster_file" not in extra:
            spec_file = work / "cluster.yml"
            spec_file.write_text(yaml.safe_dump(document(extra.pop("spec", {}))))
            extra["cluster_file"] = str(spec_file)
        args += ["-e", json.dumps(extra)]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def podman_objects() -> list[str]:
    # The project's podman settings once a cluster or an image was made here; podman's own before.
    conf = Path("/var/lib/trove-dbaas/containers.conf")
    env = {k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"}
    if conf.exists():
        env["CONTAINERS_CONF"] = str(conf)
    found = []
    for kind in ("container", "volume", "network"):
        listing = subprocess.run(
            ["podman", kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", LABEL],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        found += [f"{kind} {name}" for name in listing]
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[subprocess.CompletedProcess, Path]]:
    assert podman_objects() == [], f"leftovers of {NAME}; remove them first"
    works = [tmp_path_factory.mktemp(f"case{index}") for index in range(len(CASES))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(run, CASES, works))
    return {index: (proc, works[index]) for index, proc in enumerate(procs)}


def test_every_operation_is_covered() -> None:
    assert {"backup", "cluster_apply", "member_replace", "restore", "switchover"} <= set(OPERATIONS)
    assert {case[0] for case in CASES} == set(OPERATIONS)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{json.dumps(c[1])[:40]}" for c in CASES])
def test_refused_with_one_clear_message_and_nothing_created(index: int, results) -> None:
    proc, work = results[index]
    _playbook, _extra, expected = CASES[index]
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "Traceback" not in output and "An exception occurred" not in output, output[-3000:]
    messages = ERROR.findall(output)
    assert len(messages) == 1 and output.count("fatal: [") == 1, output[-3000:]
    message = messages[0]
    assert message.startswith(expected), message
    # every line of it names the field or variable at fault
    for line in message.splitlines():
        assert re.match(r"[A-Za-z_(\[][^ ]*: \S", line), line
    home = work / "home"
    assert not home.exists() or [p for p in home.rglob("*") if p.is_file()] == []


def test_nothing_was_created_on_podman(results) -> None:
    assert podman_objects() == []
