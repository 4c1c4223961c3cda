"""Write awx/vars/job_templates.json: one AWX job template per operation playbook, with its survey.

The cluster questions take their choices, limits and descriptions from the JSON Schema
(schemas/cluster-v1.json); each template's extra_vars assemble the answers into the cluster
document the playbooks load. `--check` fails when the file is not what this script would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas" / "schemas" / "cluster-v1.json"
OUTPUT = ROOT / "awx" / "vars" / "job_templates.json"

# The cluster document the playbooks read, built from the survey answers (AWX templates job extra_vars).
CLUSTER_DOCUMENT = {
    "apiVersion": "trove.dbaas/v1",
    "kind": "Cluster",
    "metadata": {"name": "{{ survey_cluster_name }}"},
    "spec": {
        "engine": "{{ survey_engine }}",
        "topology": "{{ survey_topology }}",
        "members": "{{ survey_members | int }}",
    },
}


def question(
    variable: str, kind: str, default: Any, text: str, *, choices: list[str] | None = None, required: bool = False
) -> dict[str, Any]:
    entry = {"variable": variable, "type": kind, "question_name": text, "required": required, "default": default}
    if choices:
        entry["choices"] = choices
    return entry


def yes_no(variable: str, text: str) -> dict[str, Any]:
    return question(variable, "multiplechoice", "false", text, choices=["false", "true"])


# Operation playbook -> (description, its own survey questions).
OPERATIONS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "cluster_apply": ("Create a cluster or converge it to the survey's shape", []),
    "cluster_status": ("Members, roles, states, lag and endpoint", []),
    "cluster_health": ("Check every member and the cluster; fails naming each problem", []),
    "cluster_delete": (
        "Delete the members; data volumes stay unless purge",
        [
            question("confirm", "text", "", "Type the cluster name to confirm"),
            yes_no("purge", "Also remove the data volumes"),
        ],
    ),
    "switchover": (
        "Planned switchover, no acknowledged commit lost",
        [question("target", "text", "", "Member to promote (empty: the most advanced replica)")],
    ),
    "failover": (
        "Promote the most advanced replica when the primary is gone",
        [yes_no("force", "Promote even if the primary still answers")],
    ),
    "backup": (
        "Take one backup now",
        [question("type", "multiplechoice", "full", "Backup type", choices=["full", "diff", "incr"])],
    ),
    "restore": (
        "Restore another cluster's backups into this (new) cluster",
        [
            question("source", "text", "", "Cluster whose backups are restored", required=True),
            question("target_time", "text", "", "Point in time, e.g. 2025-01-31 12:00:00+00 (empty: latest)"),
            question("confirm", "text", "", "This cluster's name, to replace a cluster that has data"),
        ],
    ),
    "member_replace": (
        "Replace one member with a new one",
        [question("member", "text", "", "Member to replace, e.g. pg-demo-1", required=True)],
    ),
    "upgrade": ("Rolling minor upgrade", []),
    "rotate_credentials": (
        "New passwords, applied without a restart",
        [question("users", "text", "", "Comma-separated users (empty: every password)")],
    ),
    "rotate_tls": ("New member keys and certificates from the cluster CA", []),
}
# Playbooks that act on no cluster document.
HOST_OPERATIONS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "image_build": (
        "Build the guest images on the podman host",
        [yes_no("image_force", "Rebuild even when the recipe is unchanged")],
    ),
}


def cluster_questions(schema: dict[str, Any]) -> list[dict[str, Any]]:
    metadata, spec = schema["properties"]["metadata"], schema["properties"]["spec"]["properties"]
    name, members, engine, topology = metadata["properties"]["name"], spec["members"], spec["engine"], spec["topology"]
    return [
        {
            **question("survey_cluster_name", "text", name["examples"][0], name["description"], required=True),
            "min": 1,
            "max": 24,
        },
        question("survey_engine", "multiplechoice", "postgresql", engine["description"], choices=engine["enum"]),
        question("survey_topology", "multiplechoice", "replicated", topology["description"], choices=topology["enum"]),
        {
            **question("survey_members", "integer", members["examples"][0], members["description"], required=True),
            "min": members["minimum"],
            "max": members["maximum"],
        },
    ]


def job_template(playbook: str, description: str, questions: list[dict[str, Any]], document: bool) -> dict[str, Any]:
    return {
        "name": f"trove.dbaas {playbook}",
        "description": description,
        "playbook": f"playbooks/{playbook}.yml",
        "extra_vars": CLUSTER_DOCUMENT if document else {},
        "survey_spec": {"name": playbook, "description": description, "spec": questions},
    }


def job_templates(schema: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = cluster_questions(schema)
    templates = [job_template(name, text, cluster + own, True) for name, (text, own) in OPERATIONS.items()]
    templates += [job_template(name, text, own, False) for name, (text, own) in HOST_OPERATIONS.items()]
    return templates


def render() -> str:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return json.dumps({"trove_awx_job_templates": job_templates(schema)}, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    text = render()
    if parser.parse_args().check:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
