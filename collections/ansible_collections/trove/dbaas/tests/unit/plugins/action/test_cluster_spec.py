from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible_collections.trove.dbaas.plugins.action import cluster_spec
from ansible_collections.trove.dbaas.plugins.action.cluster_spec import SCHEMA_PATH, ActionModule, check_definition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

COLLECTION = Path(__file__).resolve().parents[4]

DOCUMENT = {
    "apiVersion": "trove.dbaas/v1",
    "kind": "Cluster",
    "metadata": {"name": "pg-demo"},
    "spec": {"engine": "postgresql", "topology": "standalone"},
}
YAML = """\
apiVersion: trove.dbaas/v1
kind: Cluster
metadata:
  name: pg-demo
spec:
  engine: postgresql
  topology: standalone
"""


def action(args: dict[str, Any], search_path: Path | None = None, check_mode: bool = False) -> ActionModule:
    """An ActionModule with just enough of a task around it; the loader is Ansible's real one."""
    task = MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.action = "trove.dbaas.cluster_spec"
    task.get_search_path.return_value = [str(search_path)] if search_path else []
    connection = MagicMock()
    connection._shell.tmpdir = "/nonexistent"  # keeps ActionBase from creating a remote tmp dir
    module = ActionModule(task, connection, MagicMock(), DataLoader(), None, None)
    module._load_name = "trove.dbaas.cluster_spec"
    return module


def run(args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return action(args, **kwargs).run(task_vars={})


def assert_failed(result: dict[str, Any], *expected: str) -> None:
    assert result["failed"] is True
    assert result["changed"] is False
    assert result["msg"] == "\n".join(result["errors"])
    assert len(result["msg"].splitlines()) == len(result["errors"])
    assert "cluster" not in result
    for text in expected:
        assert any(text in error for error in result["errors"]), result["errors"]


def test_schema_path_is_the_collection_file() -> None:
    assert Path(SCHEMA_PATH) == COLLECTION / "schemas" / "cluster-v1.json"
    assert json.loads(Path(SCHEMA_PATH).read_text())["$id"].endswith("/cluster-v1.json")


def test_definition_is_normalized() -> None:
    result = run({"definition": DOCUMENT})
    assert result.get("failed") is not True
    assert result["changed"] is False
    assert result["cluster"]["spec"]["members"] == 1
    assert result["cluster"]["spec"]["endpoint"]["port"] == 5432
    assert "errors" not in result


def test_check_mode_gives_the_same_result() -> None:
    assert run({"definition": DOCUMENT}, check_mode=True) == run({"definition": DOCUMENT})


def test_invalid_definition_lists_every_problem() -> None:
    document = json.loads(json.dumps(DOCUMENT))
    document["spec"].update(members=0, users=[{"name": "app", "password": "x"}])
    result = run({"definition": document})
    assert_failed(
        result,
        "spec.members: 0 is less than the minimum of 1",
        "spec.users[0].password: unknown field; allowed: commands, grants, keys, name",
    )
    assert result["errors"] == sorted(result["errors"])
    assert len(result["msg"].splitlines()) == 2


@pytest.mark.parametrize(
    ("definition", "kind"), [([DOCUMENT], "list"), ("text", "string"), (None, "null"), (5, "integer")]
)
def test_definition_that_is_not_a_mapping(definition: Any, kind: str) -> None:
    assert_failed(run({"definition": definition}), f"(document): expected a mapping, got {kind}")


def test_src_absolute_path(tmp_path: Path) -> None:
    source = tmp_path / "pg-demo.yml"
    source.write_text(YAML)
    result = run({"src": str(source)})
    assert result["cluster"]["metadata"] == {"name": "pg-demo", "labels": {}}


def test_src_found_in_files_dir(tmp_path: Path) -> None:
    (tmp_path / "files" / "clusters").mkdir(parents=True)
    (tmp_path / "files" / "clusters" / "pg-demo.yml").write_text(YAML)
    result = run({"src": "clusters/pg-demo.yml"}, search_path=tmp_path)
    assert result["cluster"]["spec"]["topology"] == "standalone"


def test_src_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-e cluster_file=examples/x.yml` from the project directory (README) must find the file."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "pg-demo.yml").write_text(YAML)
    monkeypatch.chdir(tmp_path)
    result = run({"src": "examples/pg-demo.yml"}, search_path=tmp_path / "playbooks")
    assert result["cluster"]["metadata"]["name"] == "pg-demo"
    assert_failed(run({"src": "examples/other.yml"}, search_path=tmp_path / "playbooks"), "examples/other.yml")


def test_src_yaml_oddities_are_reported(tmp_path: Path) -> None:
    source = tmp_path / "odd.yml"
    source.write_text(YAML + "  backup:\n    schedule: 2024-01-01\n  parameters:\n    1: x\n")
    assert_failed(
        run({"src": str(source)}),
        "spec.backup.schedule: a value of type date is not allowed",
        "spec.parameters: keys must be strings, got integer 1",
    )


@pytest.mark.parametrize(("text", "expected"), [("", "got null"), ("- a\n- b\n", "got list"), ("a: [", "(src): ")])
def test_src_content_problems(tmp_path: Path, text: str, expected: str) -> None:
    source = tmp_path / "bad.yml"
    source.write_text(text)
    assert_failed(run({"src": str(source)}), expected)


def test_src_missing(tmp_path: Path) -> None:
    assert_failed(run({"src": "nope.yml"}, search_path=tmp_path), "(src): ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "(arguments): one of the following is required: definition, src"),
        ({"definition": DOCUMENT, "src": "x.yml"}, "(arguments): parameters are mutually exclusive: definition|src"),
        ({"definition": DOCUMENT, "bogus": 1}, "(arguments): "),
    ],
)
def test_bad_arguments(args: dict[str, Any], expected: str) -> None:
    assert_failed(run(args), expected)


def test_schema_is_read_from_the_given_file(tmp_path: Path) -> None:
    # A changed copy of the schema changes the verdict: the plugin really reads the file.
    schema = json.loads(Path(SCHEMA_PATH).read_text())
    schema["properties"]["metadata"]["properties"]["name"]["pattern"] = "^x$"
    changed = tmp_path / "cluster-v1.json"
    changed.write_text(json.dumps(schema))
    assert check_definition(DOCUMENT)["changed"] is False
    assert_failed(check_definition(DOCUMENT, str(changed)), "metadata.name: 'pg-demo' does not match '^x$'")


def test_missing_or_broken_schema_file_is_reported(tmp_path: Path) -> None:
    assert_failed(check_definition(DOCUMENT, str(tmp_path / "none.json")), "(schema): cannot use ")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert_failed(check_definition(DOCUMENT, str(broken)), "(schema): cannot use ")


def test_unexpected_exception_becomes_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cluster_spec, "validate_cluster", boom)
    assert_failed(run({"definition": DOCUMENT}), "(internal): RuntimeError: boom")


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.dates(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(definition=values)
def test_any_definition_gives_a_result(definition: Any) -> None:
    result = run({"definition": definition})
    assert result["changed"] is False
    if result.get("failed"):
        assert result["errors"] and result["msg"]
    else:
        assert isinstance(result["cluster"], dict)
