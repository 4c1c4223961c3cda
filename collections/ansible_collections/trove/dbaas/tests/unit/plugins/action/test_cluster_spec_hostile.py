"""Hostile cluster documents: every refusal is a list of short, one-line messages that each start with
the path of the field at fault (`spec.members: ...`), and nothing but a refusal comes back.

The generators aim at what people and programs get wrong: wrong types, unknown keys, numbers out of
range, unicode and huge strings, missing fields, every engine x topology x backend, references
between users and databases, and the backup/endpoint/tls/persistence sections.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.trove.dbaas.plugins.action.cluster_spec import check_definition
from ansible_collections.trove.dbaas.plugins.module_utils._spec import (
    AVAILABLE_BACKENDS,
    AVAILABLE_TOPOLOGIES,
    MEMBER_LIMITS,
    SHARDED_TOPOLOGIES,
    format_path,
    load_schema,
    validate_cluster,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCHEMA_PATH = Path(__file__).resolve().parents[4] / "schemas" / "cluster-v1.json"
SCHEMA = load_schema(str(SCHEMA_PATH))
ENGINES = SCHEMA["properties"]["spec"]["properties"]["engine"]["enum"]
TOPOLOGIES = SCHEMA["properties"]["spec"]["properties"]["topology"]["enum"]
BACKENDS = SCHEMA["$defs"]["placement"]["properties"]["backend"]["enum"]
TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec")

# A path as format_path writes it: `(document)`, or keys joined by dots with [index] and ['odd key'].
_KEY = r"[A-Za-z_][A-Za-z0-9_-]*"
_BRACKET = r"\[(?:[0-9]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]"
PATH = re.compile(rf"(?:\(document\)|(?:{_KEY}|{_BRACKET})(?:\.{_KEY}|{_BRACKET})*)")
MESSAGE = re.compile(rf"(?P<path>{PATH.pattern}): (?P<text>\S.*)\Z")
# Long enough for the longest rule message with a few names in it; a huge input value must be cut.
MAX_MESSAGE = 400


def field_of(message: str) -> str:
    match = MESSAGE.match(message)
    assert match, f"no field path at the start of {message!r}"
    return match["path"]


def assert_refusal_or_cluster(document: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The contract every input must meet; returns what validate_cluster returned."""
    cluster, errors = validate_cluster(document, SCHEMA)
    assert isinstance(errors, list)
    if cluster is None:
        assert errors, "a refusal without a message"
    else:
        assert errors == []
        json.dumps(cluster, allow_nan=False)
    for message in errors:
        assert isinstance(message, str)
        assert "\n" not in message and "Traceback" not in message
        assert len(message) <= MAX_MESSAGE, f"{len(message)} characters: {message[:120]}..."
        path = field_of(message)
        # the path starts at the root, or at a key of the document (an unknown one included)
        given = (
            {format_path((key,)) for key in document if isinstance(key, str)} if isinstance(document, dict) else set()
        )
        assert path == "(document)" or any(
            path == top or path.startswith((top + ".", top + "[")) for top in given | set(TOP_LEVEL)
        ), path
    # The action plugin shows the same messages, one per line.
    result = check_definition(document, str(SCHEMA_PATH))
    if errors:
        assert result["failed"] is True
        assert result["errors"] == errors
        assert result["msg"] == "\n".join(errors)
    else:
        assert "failed" not in result
    return cluster, errors


def document(engine: str = "postgresql", topology: str = "replicated", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trove.dbaas/v1",
        "kind": "Cluster",
        "metadata": {"name": "e2e-hostile"},
        "spec": {"engine": engine, "topology": topology, **spec},
    }


SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))

huge = st.sampled_from(["x" * 100_000, "é" * 50_000, "\U0001f600" * 30_000, "a\nb" * 20_000, "\x00" * 1000])
weird_text = st.text(max_size=40) | huge | st.sampled_from(["", " ", "\t", "../../etc/passwd", "$(id)", "{{ 7*7 }}"])
numbers = st.sampled_from([0, -1, 1, 2, 3, 8, 9, 10, 65535, 65536, 2**31, 2**63, 2**80, -(2**80), 0.5, 1.0, 1e308])
values = st.recursive(
    st.none() | st.booleans() | numbers | st.floats() | weird_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(weird_text, children, max_size=3),
    max_leaves=12,
)

# Every place a value can go, each with good values to mix with the bad ones.
FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("metadata", "name"): st.sampled_from(["pg", "a" * 24, "a" * 25, "Pg", "-pg", "pg-", "pg_1", "pg\n"]),
    ("metadata", "labels"): st.dictionaries(weird_text, weird_text | numbers, max_size=3),
    ("spec", "engine"): st.sampled_from(ENGINES),
    ("spec", "topology"): st.sampled_from(TOPOLOGIES),
    ("spec", "version"): st.sampled_from(["15", "10.11", "7", "16", 15, 15.0, ""]),
    ("spec", "members"): numbers | st.integers(min_value=-3, max_value=12),
    ("spec", "storage"): st.fixed_dictionaries({"size": st.sampled_from(["10Gi", "0Gi", "1Pi", "10", "10gi"])}),
    ("spec", "replication"): st.fixed_dictionaries(
        {}, optional={"mode": st.sampled_from(["sync", "async", "semi"]), "syncCount": numbers}
    ),
    ("spec", "tls"): st.fixed_dictionaries({}, optional={"enabled": st.booleans() | st.sampled_from(["yes", 1])}),
    ("spec", "persistence"): st.fixed_dictionaries({}, optional={"mode": st.sampled_from(["aof", "rdb", "both", "x"])}),
    ("spec", "parameters"): st.dictionaries(
        st.sampled_from(["max_connections", "work_mem", "Bad Key", "x" * 300]), values, max_size=3
    ),
    ("spec", "databases"): st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["appdb", "other", "postgres", "trove_x", "Bad", "a" * 64])},
            optional={"owner": st.sampled_from(["app", "ghost", None, 5])},
        ),
        max_size=3,
    ),
    ("spec", "users"): st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["app", "reporting", "root", "app"])},
            optional={
                "grants": st.lists(
                    st.fixed_dictionaries(
                        {
                            "database": st.sampled_from(["appdb", "ghost", "other"]),
                            "access": st.sampled_from(["all", "readonly", "readwrite", "owner"]),
                        }
                    ),
                    max_size=3,
                ),
                "keys": st.lists(st.sampled_from(["app:*", "", "x" * 200, "é"]), max_size=2),
                "commands": st.lists(st.sampled_from(["+@read", "-@all", "+get|x", "flushall"]), max_size=2),
                "password": st.just("secret"),
            },
        ),
        max_size=3,
    ),
    ("spec", "backup"): st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "schedule": st.sampled_from(["daily", "*-*-* 02:30:00", "", "é"]),
            "incrementalSchedule": st.sampled_from(["hourly", ""]),
            "retention": st.fixed_dictionaries({}, optional={"full": numbers, "diff": numbers}),
            "repository": st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["member", "s3", "nfs"]),
                    "path": st.sampled_from(["/srv/b", "relative", "/é"]),
                    "bucket": st.sampled_from(["b", ""]),
                    "region": st.sampled_from(["eu-west-1", ""]),
                    "endpoint": st.sampled_from(["s3.example.net", "http://x"]),
                    "uriStyle": st.sampled_from(["host", "path", "virtual"]),
                },
            ),
        },
    ),
    ("spec", "endpoint"): st.fixed_dictionaries(
        {},
        optional={
            "port": numbers,
            "allowedCidrs": st.lists(st.sampled_from(["10.0.0.0/8", "::/0", "10.0.0.0/33", "x", ""]), max_size=2),
            "proxy": st.fixed_dictionaries(
                {}, optional={"enabled": st.booleans(), "primaryPort": numbers, "replicaPort": numbers}
            ),
        },
    ),
    ("spec", "placement"): st.lists(
        st.fixed_dictionaries(
            {"backend": st.sampled_from(BACKENDS)},
            optional={
                "count": numbers,
                "container": st.fixed_dictionaries(
                    {},
                    optional={
                        "host": st.sampled_from(["localhost", "a b", ""]),
                        "cpus": numbers,
                        "memory": st.sampled_from(["1g", "0m", "1G", "1"]),
                        "network": st.sampled_from(["trove", "-x", "é"]),
                        "subnet": st.sampled_from(["10.89.0.0/24", "10.89.0.0/99", "999.1.1.1/8"]),
                    },
                ),
                "nova": st.fixed_dictionaries({"cloud": st.just("c"), "flavor": st.just("f"), "network": st.just("n")}),
                "ironic": st.fixed_dictionaries({}, optional={"cloud": st.just("c")}),
            },
        ),
        max_size=3,
    ),
}


def put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = document(draw(st.sampled_from(ENGINES)), draw(st.sampled_from(TOPOLOGIES)))
    for path in draw(st.lists(st.sampled_from(list(FIELDS)), max_size=6, unique=True)):
        good = draw(st.booleans())
        put(doc, path, draw(FIELDS[path] if good else values))
    for _key in range(draw(st.integers(min_value=0, max_value=2))):  # unknown keys at any level
        where = draw(st.sampled_from([(), ("metadata",), ("spec",), ("spec", "endpoint"), ("spec", "backup")]))
        parent = doc
        for key in where:
            parent = parent.get(key) if isinstance(parent.get(key), dict) else {}
        parent[draw(weird_text)] = draw(values)
    for _drop in range(draw(st.integers(min_value=0, max_value=2))):  # missing fields
        section = draw(st.sampled_from([doc, doc.get("metadata"), doc.get("spec")]))
        if isinstance(section, dict) and section:
            section.pop(draw(st.sampled_from(sorted(section, key=repr))))
    return doc


@SETTINGS
@given(doc=hostile_documents())
def test_hostile_documents_get_a_cluster_or_field_messages(doc: dict[str, Any]) -> None:
    before = copy.deepcopy(doc)
    assert_refusal_or_cluster(doc)
    assert doc == before  # never changed in place


@SETTINGS
@given(value=values)
def test_any_value_anywhere_at_the_top(value: Any) -> None:
    assert_refusal_or_cluster(value)
    for key in (*TOP_LEVEL, "extra"):
        doc = document()
        doc[key] = value
        assert_refusal_or_cluster(doc)


@SETTINGS
@given(key=weird_text, value=values, where=st.sampled_from([(), ("metadata",), ("spec",), ("spec", "tls")]))
def test_unknown_keys_are_named_and_cut_short(key: str, value: Any, where: tuple[str, ...]) -> None:
    doc = document()
    parent = doc
    for part in where:
        parent = parent.setdefault(part, {})
    parent[key] = value
    _cluster, errors = assert_refusal_or_cluster(doc)
    if key not in ("apiVersion", "kind", "metadata", "spec", "name", "engine", "topology", "enabled"):
        where_key = format_path((*where, key))
        assert any(field_of(message).startswith(where_key) for message in errors), (where_key, errors)


@pytest.mark.parametrize(("engine", "topology", "backend"), list(itertools.product(ENGINES, TOPOLOGIES, BACKENDS)))
def test_every_engine_topology_and_backend(engine: str, topology: str, backend: str) -> None:
    low, high = MEMBER_LIMITS.get(topology, (1, 9))
    options = {"nova": {"cloud": "c", "flavor": "f", "network": "n"}, "ironic": {"cloud": "c"}}.get(backend, {})
    for members in sorted({low - 1, low, high, high + 1, 10} - {-1}):
        placement = [{"backend": backend, **({backend: options} if options else {})}]
        # A sharded topology's member count must also be shards x (1 + replicasPerShard): 3 shards and
        # as many replicas as fit (none fit 2 or 10 members, which stay refused).
        sharding = (
            {"sharding": {"shards": 3, "replicasPerShard": min(max(members // 3 - 1, 0), 2)}}
            if topology in SHARDED_TOPOLOGIES and topology in AVAILABLE_TOPOLOGIES.get(engine, ())
            else {}
        )
        cluster, errors = assert_refusal_or_cluster(
            document(engine, topology, members=members, placement=placement, **sharding)
        )
        usable = (
            topology in AVAILABLE_TOPOLOGIES.get(engine, ())
            and backend in AVAILABLE_BACKENDS
            and low <= members <= high
            and 1 <= members <= 9
        )
        assert (cluster is not None) == usable, errors
        if not usable:
            fields = {field_of(message) for message in errors}
            if members > 9 or members < 1 or not low <= members <= high:
                assert "spec.members" in fields
            if topology not in AVAILABLE_TOPOLOGIES.get(engine, ()):
                assert "spec.topology" in fields or "spec.engine" in fields or "spec.members" in fields
            if backend not in AVAILABLE_BACKENDS and 1 <= members <= 9:
                assert "spec.placement[0].backend" in fields


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"members": "3"}, "spec.members"),
        ({"members": 3.0}, "spec.members"),
        ({"members": True}, "spec.members"),
        ({"members": 2**80}, "spec.members"),
        ({"version": 15}, "spec.version"),
        ({"tls": {"enabled": "yes"}}, "spec.tls.enabled"),
        ({"tls": True}, "spec.tls"),
        ({"endpoint": {"port": 0}}, "spec.endpoint.port"),
        ({"endpoint": {"port": 70000}}, "spec.endpoint.port"),
        ({"endpoint": {"allowedCidrs": "10.0.0.0/8"}}, "spec.endpoint.allowedCidrs"),
        ({"endpoint": {"allowedCidrs": ["10.0.0.0/40"]}}, "spec.endpoint.allowedCidrs[0]"),
        ({"endpoint": {"proxy": {"enabled": True, "primaryPort": 5432}}}, "spec.endpoint.proxy.primaryPort"),
        ({"persistence": {"mode": "aof"}}, "spec.persistence"),
        ({"backup": {"repository": {"type": "s3"}}}, "spec.backup.repository"),
        ({"backup": {"repository": {"bucket": "b"}}}, "spec.backup.repository.bucket"),
        ({"backup": {"retention": {"full": 0}}}, "spec.backup.retention.full"),
        ({"backup": {"schedule": "é"}}, "spec.backup.schedule"),
        ({"users": [{"name": "app", "password": "x"}]}, "spec.users[0].password"),
        (
            {"users": [{"name": "app", "grants": [{"database": "ghost", "access": "all"}]}]},
            "spec.users[0].grants[0].database",
        ),
        ({"databases": [{"name": "appdb", "owner": "ghost"}]}, "spec.databases[0].owner"),
        ({"databases": [{"name": "appdb"}, {"name": "appdb"}]}, "spec.databases[1].name"),
        ({"users": [{"name": "root"}]}, "spec.users[0].name"),
        ({"users": [{"name": "app", "keys": ["*"]}]}, "spec.users[0].keys"),
        ({"placement": []}, "spec.placement"),
        ({"placement": [{"backend": "container", "count": 1}]}, "spec.placement"),
        ({"placement": [{"backend": "container", "nova": {"cloud": "c", "flavor": "f"}}]}, "spec.placement[0].nova"),
        ({"storage": {"size": "0Gi"}}, "spec.storage.size"),
        ({"replication": {"mode": "sync", "syncCount": 5}}, "spec.replication.syncCount"),
        ({"x" * 100_000: 1}, "spec"),
        ({"é" * 1000: 1}, "spec"),
        ({"parameters": {"work_mem": {"a": 1}}}, "spec.parameters.work_mem"),
        ({"parameters": {"x" * 100_000: 1}}, "spec.parameters"),
    ],
)
def test_each_mistake_names_its_field(spec: dict[str, Any], field: str) -> None:
    _cluster, errors = assert_refusal_or_cluster(document(**spec))
    fields = [field_of(message) for message in errors]
    assert any(found == field or found.startswith((field + ".", field + "[")) for found in fields), errors


def test_huge_metadata_name_and_label_are_cut_short() -> None:
    doc = document()
    doc["metadata"] = {"name": "a" * 100_000, "labels": {"k" * 100_000: "v", "ok": "v" * 100_000}}
    _cluster, errors = assert_refusal_or_cluster(doc)
    assert {field_of(message) for message in errors} >= {"metadata.name", "metadata.labels"}
