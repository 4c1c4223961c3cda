"""The AWX job templates (awx/vars/job_templates.json) fit the playbooks and the cluster schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2.nativetypes import NativeEnvironment

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas"
TEMPLATES = json.loads((ROOT / "awx" / "vars" / "job_templates.json").read_text(encoding="utf-8"))[
    "trove_awx_job_templates"
]
SCHEMA = json.loads((COLLECTION / "schemas" / "cluster-v1.json").read_text(encoding="utf-8"))

if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.trove.dbaas.plugins.filter.extra_vars import extra_var_errors  # noqa: E402
from ansible_collections.trove.dbaas.plugins.module_utils._spec import validate_cluster  # noqa: E402

# The extra vars the operation playbooks read and what each must be (checked by tasks/load_cluster.yml).
EXTRA_VAR_KINDS = yaml.safe_load((COLLECTION / "playbooks" / "vars" / "trove.yml").read_text(encoding="utf-8"))[
    "trove_extra_var_kinds"
]


def _name(template: dict[str, Any]) -> str:
    return template["name"]


def _render(value: Any, answers: dict[str, Any]) -> Any:
    """Fill the survey answers into extra_vars the way Ansible's native templating does."""
    if isinstance(value, dict):
        return {key: _render(item, answers) for key, item in value.items()}
    if isinstance(value, str) and "{{" in value:
        return NativeEnvironment().from_string(value).render(answers)
    return value


def test_generated_file_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_awx_job_templates.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_operation_playbook_has_one_job_template() -> None:
    playbooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "playbooks").glob("*.yml"))
    assert sorted(t["playbook"] for t in TEMPLATES) == playbooks


@pytest.mark.parametrize("template", TEMPLATES, ids=_name)
def test_job_template_runs_the_collection_playbook(template: dict[str, Any]) -> None:
    entry_point = ROOT / template["playbook"]
    name = entry_point.stem
    assert entry_point.is_file(), f"{template['name']}: no playbook {template['playbook']} in the project"
    assert f"ansible.builtin.import_playbook: trove.dbaas.{name}\n" in entry_point.read_text(encoding="utf-8")
    assert (COLLECTION / "playbooks" / f"{name}.yml").is_file()


@pytest.mark.parametrize("template", TEMPLATES, ids=_name)
def test_survey_questions_are_well_formed(template: dict[str, Any]) -> None:
    questions = template["survey_spec"]["spec"]
    variables = [q["variable"] for q in questions]
    assert len(variables) == len(set(variables)), f"repeated survey variables: {variables}"
    for q in questions:
        assert q["question_name"], q
        if q["type"] == "multiplechoice":
            assert q["default"] in q["choices"], q
        if q["type"] == "integer":
            assert q["min"] <= q["default"] <= q["max"], q
    used = set(re.findall(r"\{\{\s*(\w+)", json.dumps(template["extra_vars"])))
    assert used <= set(variables), f"extra_vars use {sorted(used - set(variables))}, which no question sets"


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t["extra_vars"]], ids=_name)
def test_survey_defaults_make_a_valid_cluster_document(template: dict[str, Any]) -> None:
    answers = {q["variable"]: q["default"] for q in template["survey_spec"]["spec"]}
    document = _render(template["extra_vars"], answers)
    cluster, errors = validate_cluster(document, SCHEMA)
    assert errors == [], f"{template['name']}: {document} -> {errors}"
    assert cluster["metadata"]["name"] == answers["survey_cluster_name"]
    assert cluster["spec"]["members"] == answers["survey_members"]


def _operation_questions(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [q for q in template["survey_spec"]["spec"] if not q["variable"].startswith("survey_")]


@pytest.mark.parametrize("template", [t for t in TEMPLATES if _operation_questions(t)], ids=_name)
def test_operation_questions_are_variables_the_playbook_reads(template: dict[str, Any]) -> None:
    playbook = (COLLECTION / template["playbook"]).read_text(encoding="utf-8")
    for question in _operation_questions(template):
        variable = question["variable"]
        assert variable in EXTRA_VAR_KINDS or f"-e {variable}=" in playbook, (
            f"{template['name']}: the playbook neither checks nor documents the extra var {variable}"
        )
        kind = EXTRA_VAR_KINDS.get(variable)
        if isinstance(kind, list):
            assert question["type"] == "multiplechoice" and sorted(question["choices"]) == sorted(kind), question


@pytest.mark.parametrize("template", [t for t in TEMPLATES if _operation_questions(t)], ids=_name)
def test_survey_defaults_pass_the_extra_var_checks(template: dict[str, Any]) -> None:
    """What AWX sends when nobody changes an answer: the defaults that are not empty, plus each choice."""
    questions = _operation_questions(template)
    defaults = {q["variable"]: q["default"] for q in questions if q["default"] != ""}
    assert extra_var_errors(defaults, EXTRA_VAR_KINDS) == []
    for question in (q for q in questions if q["type"] == "multiplechoice"):
        for choice in question["choices"]:
            assert extra_var_errors({question["variable"]: choice}, EXTRA_VAR_KINDS) == [], (question, choice)


def test_cluster_choices_are_the_schema_enums() -> None:
    spec = SCHEMA["properties"]["spec"]["properties"]
    for template in (t for t in TEMPLATES if t["extra_vars"]):
        choices = {q["variable"]: q.get("choices") for q in template["survey_spec"]["spec"]}
        assert choices["survey_engine"] == spec["engine"]["enum"]
        assert choices["survey_topology"] == spec["topology"]["enum"]


def test_rendering_refuses_what_the_schema_refuses() -> None:
    template = next(t for t in TEMPLATES if t["extra_vars"])
    answers = {q["variable"]: q["default"] for q in template["survey_spec"]["spec"]}
    document = _render(template["extra_vars"], {**answers, "survey_members": 12})
    assert validate_cluster(document, SCHEMA)[1], "12 members should be refused"


def test_awx_playbook_passes_syntax_check() -> None:
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(ansible_playbook), "--syntax-check", str(ROOT / "awx" / "configure.yml")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
