from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.trove.dbaas.plugins.module_utils import _spec
from ansible_collections.trove.dbaas.plugins.module_utils._spec import (
    AVAILABLE_BACKENDS,
    AVAILABLE_TOPOLOGIES,
    DEFAULT_PORTS,
    ENGINE_VERSIONS,
    PLANNED_TOPOLOGIES,
    format_path,
    load_schema,
    schema_errors,
    validate_cluster,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[4] / "schemas" / "cluster-v1.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema(str(SCHEMA_PATH))


def minimal(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trove.dbaas/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg-demo"},
        "spec": {"engine": "postgresql", "topology": "replicated", **spec},
    }


def full() -> dict[str, Any]:
    """A valid document using every section, so each mutation below lands on real data."""
    return {
        "apiVersion": "trove.dbaas/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg-demo", "labels": {"team": "payments"}},
        "spec": {
            "engine": "postgresql",
            "version": "15",
            "topology": "replicated",
            "members": 3,
            "placement": [
                {"backend": "container", "count": 1, "container": {"host": "podman-1", "cpus": 2}},
                {"backend": "container", "container": {"host": "podman-2", "memory": "512m"}},
            ],
            "storage": {"size": "20Gi"},
            "replication": {"mode": "sync", "syncCount": 2},
            "tls": {"enabled": False},
            "parameters": {"shared_buffers": "128MB", "max_connections": 200, "log.enabled": True},
            "databases": [{"name": "appdb", "owner": "app"}, {"name": "reports"}],
            "users": [
                {"name": "app", "grants": [{"database": "appdb", "access": "all"}]},
                {"name": "bi", "grants": [{"database": "reports", "access": "readonly"}]},
            ],
            "backup": {
                "enabled": True,
                "schedule": "Mon..Fri *-*-* 02:00:00",
                "retention": {"full": 7},
                "repository": {"type": "s3", "bucket": "backups", "region": "eu-west-1"},
            },
            "endpoint": {"port": 15432, "allowedCidrs": ["10.0.0.0/8", "2001:db8::/32"]},
        },
    }


def check(document: Any, schema: dict[str, Any]) -> list[str]:
    cluster, errors = validate_cluster(document, schema)
    assert cluster is None, "expected errors"
    return errors


def one_error(document: Any, schema: dict[str, Any]) -> str:
    errors = check(document, schema)
    assert len(errors) == 1, errors
    return errors[0]


# --- the schema file --------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_enums_are_sorted(schema: dict[str, Any]) -> None:
    # Messages quote the enum as written; sorted lists read better and stay stable.
    def enums(node: Any) -> list[list[Any]]:
        if isinstance(node, dict):
            found = [node["enum"]] if "enum" in node else []
            return found + [e for value in node.values() for e in enums(value)]
        if isinstance(node, list):
            return [e for value in node for e in enums(value)]
        return []

    for values in enums(schema):
        assert values == sorted(values)


def test_tables_agree_with_schema(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]["properties"]
    engines = set(spec["engine"]["enum"])
    assert set(PLANNED_TOPOLOGIES) == set(ENGINE_VERSIONS) == set(DEFAULT_PORTS) == engines
    assert {t for ts in PLANNED_TOPOLOGIES.values() for t in ts} == set(spec["topology"]["enum"])
    for engine, topologies in AVAILABLE_TOPOLOGIES.items():
        assert set(topologies) <= set(PLANNED_TOPOLOGIES[engine])
    assert set(schema["$defs"]["placement"]["properties"]["backend"]["enum"]) >= AVAILABLE_BACKENDS


def test_load_schema_returns_a_private_copy() -> None:
    first = load_schema(str(SCHEMA_PATH))
    first["properties"].clear()
    assert load_schema(str(SCHEMA_PATH))["properties"]


# --- normalization ----------------------------------------------------------------------------------


def test_minimal_document_gets_every_default(schema: dict[str, Any]) -> None:
    cluster, errors = validate_cluster(minimal(), schema)
    assert errors == []
    assert cluster == {
        "apiVersion": "trove.dbaas/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg-demo", "labels": {}},
        "spec": {
            "engine": "postgresql",
            "version": "15",
            "topology": "replicated",
            "members": 3,
            "placement": [
                {
                    "backend": "container",
                    "count": 3,
                    "container": {
                        "host": "localhost",
                        "cpus": 1.0,
                        "memory": "1g",
                        "network": "trove",
                        "subnet": "10.89.0.0/24",
                    },
                }
            ],
            "storage": {"size": "10Gi"},
            "replication": {"mode": "async", "syncCount": 1},
            "tls": {"enabled": True},
            "parameters": {},
            "databases": [],
            "users": [],
            "backup": {
                "enabled": False,
                "schedule": "daily",
                "retention": {"full": 2},
                "repository": {"type": "member", "path": "/srv/data/backup"},
            },
            "endpoint": {
                "port": 5432,
                "allowedCidrs": ["0.0.0.0/0"],
                "proxy": {"enabled": False, "primaryPort": 5000, "replicaPort": 5001},
            },
        },
    }


def test_standalone_defaults_to_one_member(schema: dict[str, Any]) -> None:
    cluster, errors = validate_cluster(minimal(topology="standalone"), schema)
    assert errors == []
    assert cluster["spec"]["members"] == 1
    assert cluster["spec"]["placement"][0]["count"] == 1


def test_ha_defaults_to_three_members_and_accepts_sync(schema: dict[str, Any]) -> None:
    cluster, errors = validate_cluster(minimal(topology="ha", replication={"mode": "sync", "syncCount": 2}), schema)
    assert errors == []
    assert cluster["spec"]["members"] == 3
    assert cluster["spec"]["replication"] == {"mode": "sync", "syncCount": 2}


def test_full_document_keeps_values_and_fills_the_rest(schema: dict[str, Any]) -> None:
    cluster, errors = validate_cluster(full(), schema)
    assert errors == []
    spec = cluster["spec"]
    assert [entry["count"] for entry in spec["placement"]] == [1, 2]
    assert spec["placement"][0]["container"] == {
        "host": "podman-1",
        "cpus": 2,
        "memory": "1g",
        "network": "trove",
        "subnet": "10.89.0.0/24",
    }
    assert spec["placement"][1]["container"]["memory"] == "512m"
    assert spec["databases"] == [{"name": "appdb", "owner": "app"}, {"name": "reports", "owner": None}]
    assert spec["backup"]["repository"] == {
        "type": "s3",
        "bucket": "backups",
        "region": "eu-west-1",
        "path": "/trove-dbaas",
    }
    assert spec["endpoint"]["port"] == 15432
    assert spec["parameters"] == full()["spec"]["parameters"]


def test_normalized_document_is_valid_and_a_fixed_point(schema: dict[str, Any]) -> None:
    for document in (minimal(), full(), minimal(topology="standalone")):
        cluster, _ = validate_cluster(document, schema)
        assert schema_errors(cluster, schema) == []
        assert validate_cluster(cluster, schema) == (cluster, [])


def test_redis_defaults(schema: dict[str, Any]) -> None:
    users = [{"name": "app", "keys": ["app:*"], "commands": ["+@read", "-@dangerous", "+client|setname"]}]
    cluster, errors = validate_cluster(minimal(engine="redis", topology="sentinel", users=users), schema)
    assert errors == []
    spec = cluster["spec"]
    assert (spec["version"], spec["members"], spec["endpoint"]["port"]) == ("7", 3, 6379)
    assert spec["persistence"] == {"mode": "rdb"}
    assert spec["users"][0]["keys"] == ["app:*"]
    assert validate_cluster(cluster, schema) == (cluster, [])
    # Other engines get no Redis fields.
    pg, _ = validate_cluster(minimal(), schema)
    assert "persistence" not in pg["spec"]


@pytest.mark.parametrize("rule", ["read", "+", "+@Read", "+get key", "~app:*", "+@read;"])
def test_redis_command_rules_are_checked(rule: str, schema: dict[str, Any]) -> None:
    users = [{"name": "app", "commands": [rule]}]
    error = one_error(minimal(engine="redis", topology="standalone", users=users), schema)
    assert error.startswith("spec.users[0].commands[0]: ")


@pytest.mark.parametrize("pattern", ["", "app *", "a" * 129])
def test_redis_key_patterns_are_checked(pattern: str, schema: dict[str, Any]) -> None:
    users = [{"name": "app", "keys": [pattern]}]
    error = one_error(minimal(engine="redis", topology="standalone", users=users), schema)
    assert error.startswith("spec.users[0].keys[0]: ")


def test_redis_sharded_defaults_members_from_the_shards(schema: dict[str, Any]) -> None:
    cluster, errors = validate_cluster(minimal(engine="redis", topology="sharded"), schema)
    assert errors == []
    spec = cluster["spec"]
    assert spec["sharding"] == {"shards": 3, "replicasPerShard": 1}
    assert (spec["members"], spec["placement"][0]["count"]) == (6, 6)
    assert validate_cluster(cluster, schema) == (cluster, [])
    doc = minimal(engine="redis", topology="sharded", sharding={"shards": 4, "replicasPerShard": 0}, members=4)
    cluster, errors = validate_cluster(doc, schema)
    assert (errors, cluster["spec"]["members"]) == ([], 4)
    cluster, errors = validate_cluster(
        minimal(engine="redis", topology="sharded", sharding={"replicasPerShard": 2}), schema
    )
    assert (errors, cluster["spec"]["members"]) == ([], 9)
    # Other topologies get no sharding.
    sentinel, _ = validate_cluster(minimal(engine="redis", topology="sentinel"), schema)
    assert "sharding" not in sentinel["spec"]


def test_input_is_not_modified(schema: dict[str, Any]) -> None:
    document = full()
    validate_cluster(document, schema)
    assert document == full()


def test_backup_path_default_per_repository_type(schema: dict[str, Any]) -> None:
    cluster, _ = validate_cluster(minimal(backup={"repository": {"type": "member"}}), schema)
    assert cluster["spec"]["backup"]["repository"] == {"type": "member", "path": "/srv/data/backup"}
    cluster, _ = validate_cluster(minimal(backup={"repository": {}}), schema)
    assert cluster["spec"]["backup"]["repository"]["path"] == "/srv/data/backup"
    s3 = {"type": "s3", "bucket": "b", "region": "r"}
    cluster, _ = validate_cluster(minimal(backup={"repository": s3}), schema)
    assert cluster["spec"]["backup"]["repository"]["path"] == "/trove-dbaas"


def test_new_engine_only_needs_the_availability_table(schema: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AVAILABLE_TOPOLOGIES, "mariadb", ("standalone", "galera"))
    cluster, errors = validate_cluster(minimal(engine="mariadb", topology="galera"), schema)
    assert errors == []
    assert (cluster["spec"]["version"], cluster["spec"]["endpoint"]["port"]) == ("10.11", 3306)


def test_tagged_subclasses_become_plain_types(schema: dict[str, Any]) -> None:
    # Ansible hands over str/dict/list subclasses; the result must be plain JSON types.
    class Text(str):
        pass

    class Doc(dict):
        pass

    document = Doc(minimal(databases=[{"name": Text("appdb")}]))
    cluster, errors = validate_cluster(document, schema)
    assert errors == []
    assert type(cluster["spec"]["databases"][0]["name"]) is str
    assert json.loads(json.dumps(cluster)) == cluster


# --- what is not a document -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([1, 2], "(document): expected a mapping, got list"),
        (None, "(document): expected a mapping, got null"),
        ("apiVersion: trove.dbaas/v1", "(document): expected a mapping, got string"),
        (3, "(document): expected a mapping, got integer"),
    ],
)
def test_not_a_mapping(document: Any, expected: str, schema: dict[str, Any]) -> None:
    assert check(document, schema) == [expected]


def test_values_json_cannot_hold(schema: dict[str, Any]) -> None:
    document = minimal(backup={"schedule": datetime.date(2024, 1, 1)}, parameters={"ratio": float("inf")})
    document["metadata"]["labels"] = {1: "one", "ok": "yes"}
    assert check(document, schema) == [
        "metadata.labels: keys must be strings, got integer 1",
        "spec.backup.schedule: a value of type date is not allowed; use a string",
        "spec.parameters.ratio: inf is not a finite number",
    ]


def test_deep_nesting_is_reported(schema: dict[str, Any]) -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"a": deep}
    assert "nested deeper than 64 levels" in one_error(minimal(parameters=deep), schema)


def test_missing_jsonschema_is_reported(schema: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spec, "HAS_JSONSCHEMA", False)
    assert check(minimal(), schema) == ["(document): the Python library jsonschema is required on the controller"]


def test_unsupported_api_version_stops_early(schema: dict[str, Any]) -> None:
    document = minimal(foo=1)
    document["apiVersion"] = "trove.dbaas/v2"
    assert check(document, schema) == ["apiVersion: 'trove.dbaas/v2' is not supported; supported: trove.dbaas/v1"]


# --- schema messages --------------------------------------------------------------------------------


def drop(*path: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def put(value: Any, *path: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        node[path[-1]] = value

    return mutate


SPEC_KEYS = (
    "backup, databases, endpoint, engine, members, parameters, persistence, placement, replication, sharding, "
    "storage, tls, topology, users, version"
)

SCHEMA_CASES = [
    (drop("apiVersion"), "(document): 'apiVersion' is a required property"),
    (drop("kind"), "(document): 'kind' is a required property"),
    (put("Database", "kind"), "kind: 'Database' is not supported; expected 'Cluster'"),
    (drop("metadata", "name"), "metadata: 'name' is a required property"),
    (put("PG", "metadata", "name"), "metadata.name: 'PG' does not match '^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$'"),
    (put("a" * 25, "metadata", "name"), "metadata.name: 'aaaaaaaaaaaaaaaaaaaaaaaaa' does not match"),
    (put("pg-", "metadata", "name"), "metadata.name: 'pg-' does not match"),
    (put("pg\n", "metadata", "name"), "metadata.name: 'pg\\n' does not match"),
    (put(1, "metadata", "labels", "team"), "metadata.labels.team: 1 is not of type 'string'"),
    (put(1, "metadata", "uid"), "metadata.uid: unknown field; allowed: labels, name"),
    (put(1, "status"), "status: unknown field; allowed: apiVersion, kind, metadata, spec"),
    (put(1, "spec", "foo"), f"spec.foo: unknown field; allowed: {SPEC_KEYS}"),
    (put(1, "spec", "a b"), "spec['a b']: unknown field"),
    (put(1, "spec", "a\nb"), "spec['a\\nb']: unknown field"),
    (drop("spec", "engine"), "spec: 'engine' is a required property"),
    (put("oracle", "spec", "engine"), "spec.engine: 'oracle' is not one of ['mariadb', 'postgresql', 'redis']"),
    (put("multi", "spec", "topology"), "spec.topology: 'multi' is not one of ['galera', 'ha', 'replicated', "),
    (put(15, "spec", "version"), "spec.version: 15 is not of type 'string' (quote it: \"15\")"),
    (put(0, "spec", "members"), "spec.members: 0 is less than the minimum of 1"),
    (put(10, "spec", "members"), "spec.members: 10 is greater than the maximum of 9"),
    (put(3.0, "spec", "members"), "spec.members: 3.0 is not of type 'integer'"),
    (put(True, "spec", "members"), "spec.members: True is not of type 'integer'"),
    (put("3", "spec", "members"), "spec.members: '3' is not of type 'integer'"),
    (put([], "spec", "placement"), "spec.placement: [] should be non-empty"),
    (
        put([{"backend": "docker"}], "spec", "placement"),
        "spec.placement[0].backend: 'docker' is not one of ['container', 'ironic', 'nova']",
    ),
    (put([{"count": 3}], "spec", "placement"), "spec.placement[0]: 'backend' is a required property"),
    (put([{"backend": "container", "count": 0}], "spec", "placement"), "spec.placement[0].count: 0 is less than"),
    (
        put([{"backend": "container", "nova": {"cloud": "c", "flavor": "f"}}], "spec", "placement"),
        "spec.placement[0].nova: only allowed when backend is 'nova'",
    ),
    (
        put([{"backend": "nova", "container": {}, "nova": {"cloud": "c", "flavor": "f"}}], "spec", "placement"),
        "spec.placement[0].container: only allowed when backend is 'container'",
    ),
    (
        put([{"backend": "nova", "nova": {"cloud": "c"}}], "spec", "placement"),
        "spec.placement[0].nova: 'flavor' is a required property",
    ),
    (
        put([{"backend": "nova", "nova": {"cloud": "c", "flavor": "f", "ram": 1}}], "spec", "placement"),
        (
            "spec.placement[0].nova.ram: unknown field; allowed: availabilityZone, cloud, dataVolume, flavor, "
            "image, managementNetwork, network, volumeType"
        ),
    ),
    (
        put([{"backend": "ironic", "ironic": {"cloud": "c", "traits": "x"}}], "spec", "placement"),
        "spec.placement[0].ironic.traits: 'x' is not of type 'array'",
    ),
    (
        put([{"backend": "container", "container": {"cpus": 0}}], "spec", "placement"),
        "spec.placement[0].container.cpus: 0 is less than or equal to the minimum of 0",
    ),
    (
        put([{"backend": "container", "container": {"cpus": 65}}], "spec", "placement"),
        "spec.placement[0].container.cpus: 65 is greater than the maximum of 64",
    ),
    (
        put([{"backend": "container", "container": {"memory": "1G"}}], "spec", "placement"),
        "spec.placement[0].container.memory: '1G' does not match '^[0-9]+[kmg]$'",
    ),
    (
        put([{"backend": "container", "container": {"subnet": "10.89.0.0"}}], "spec", "placement"),
        "spec.placement[0].container.subnet: '10.89.0.0' does not match",
    ),
    (
        put([{"backend": "container", "container": {"image": "x"}}], "spec", "placement"),
        "spec.placement[0].container.image: unknown field; allowed: cpus, host, memory, network, subnet",
    ),
    (put("10GB", "spec", "storage", "size"), "spec.storage.size: '10GB' does not match '^[0-9]+(Mi|Gi|Ti)$'"),
    (put("semi", "spec", "replication", "mode"), "spec.replication.mode: 'semi' is not one of ['async', 'sync']"),
    (put(0, "spec", "replication", "syncCount"), "spec.replication.syncCount: 0 is less than the minimum of 1"),
    (put("yes", "spec", "tls", "enabled"), "spec.tls.enabled: 'yes' is not of type 'boolean'"),
    (
        put({"x": 1}, "spec", "parameters", "work_mem"),
        "spec.parameters.work_mem: {'x': 1} is not a scalar; parameter values are strings, numbers or booleans",
    ),
    (put(None, "spec", "parameters", "work_mem"), "spec.parameters.work_mem: None is not a scalar"),
    (put(1, "spec", "parameters", "Work_Mem"), "spec.parameters: 'Work_Mem' does not match '^[a-z][a-z0-9_.-]{0,62}$'"),
    (put([{"name": "App"}], "spec", "databases"), "spec.databases[0].name: 'App' does not match"),
    (put([{"name": "a" * 64}], "spec", "databases"), "... does not match '^[a-z_][a-z0-9_]{0,62}$'"),
    (
        put([{"name": "app", "password": "secret"}], "spec", "users"),
        (
            "spec.users[0].password: unknown field; allowed: commands, grants, keys, name (passwords are generated "
            "and kept in the secrets directory"
        ),
    ),
    (
        put([{"name": "app", "grants": [{"database": "appdb"}]}], "spec", "users"),
        "spec.users[0].grants[0]: 'access' is a required property",
    ),
    (
        put([{"name": "app", "grants": [{"database": "appdb", "access": "owner"}]}], "spec", "users"),
        "spec.users[0].grants[0].access: 'owner' is not one of ['all', 'readonly', 'readwrite']",
    ),
    (put("nightly\n", "spec", "backup", "schedule"), "spec.backup.schedule: 'nightly\\n' does not match"),
    (put(0, "spec", "backup", "retention", "full"), "spec.backup.retention.full: 0 is less than the minimum of 1"),
    (
        put({"type": "nfs"}, "spec", "backup", "repository"),
        "spec.backup.repository.type: 'nfs' is not one of ['member', 's3']",
    ),
    (put({"path": "relative"}, "spec", "backup", "repository"), "spec.backup.repository.path: 'relative' does not"),
    (
        put({"type": "s3", "secret": "x"}, "spec", "backup", "repository"),
        "spec.backup.repository.secret: unknown field; allowed: bucket, endpoint, path, region, type, uriStyle",
    ),
    (put(0, "spec", "endpoint", "port"), "spec.endpoint.port: 0 is less than the minimum of 1"),
    (put(65536, "spec", "endpoint", "port"), "spec.endpoint.port: 65536 is greater than the maximum of 65535"),
    (put("10.0.0.0/8", "spec", "endpoint", "allowedCidrs"), "spec.endpoint.allowedCidrs: '10.0.0.0/8' is not of type"),
]


@pytest.mark.parametrize(("mutate", "expected"), SCHEMA_CASES)
def test_schema_messages(mutate: Callable[[dict[str, Any]], None], expected: str, schema: dict[str, Any]) -> None:
    document = minimal()
    mutate(document)
    errors = check(document, schema)
    assert any(expected in error for error in errors), errors


def test_all_schema_errors_reported_sorted_and_unique(schema: dict[str, Any]) -> None:
    document = minimal(members=0, foo=1, bar=2, placement=[{"backend": "docker"}, {"backend": "docker"}])
    document["metadata"]["name"] = "Bad"
    assert check(document, schema) == [
        "metadata.name: 'Bad' does not match '^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$'",
        f"spec.bar: unknown field; allowed: {SPEC_KEYS}",
        f"spec.foo: unknown field; allowed: {SPEC_KEYS}",
        "spec.members: 0 is less than the minimum of 1",
        "spec.placement[0].backend: 'docker' is not one of ['container', 'ironic', 'nova']",
        "spec.placement[1].backend: 'docker' is not one of ['container', 'ironic', 'nova']",
    ]


def test_semantic_rules_wait_for_a_valid_schema(schema: dict[str, Any]) -> None:
    # mariadb is not available, but the schema problem is the only thing worth reporting first.
    assert check(minimal(engine="mariadb", foo=1), schema) == [f"spec.foo: unknown field; allowed: {SPEC_KEYS}"]


def test_long_values_are_shortened(schema: dict[str, Any]) -> None:
    error = one_error(minimal(members=list(range(100))), schema)
    assert error.startswith("spec.members: [0, 1, 2")
    assert "... is not of type 'integer'" in error
    assert len(error) < 120


# --- rules beyond the schema ------------------------------------------------------------------------

RULE_CASES = [
    (
        {"engine": "mariadb", "topology": "galera", "version": "10.11", "members": 2},
        "spec.members: 2 is too few for topology 'galera'; it needs at least 3 (a Galera primary component needs a "
        "majority of the members, so 3 is the fewest that survive losing one)",
    ),
    (
        {"engine": "mariadb", "version": "10.11", "replication": {"mode": "sync", "syncCount": 2}},
        "spec.replication.syncCount: 2 is not allowed for engine 'mariadb'; semi-synchronous replication waits for one "
        "replica, so it must be 1",
    ),
    (
        {"engine": "redis", "topology": "sharded", "members": 5},
        "spec.members: 5 does not match spec.sharding.shards 3 x (1 + spec.sharding.replicasPerShard 1) = 6; "
        "set spec.members to 6 or leave it out",
    ),
    (
        {"engine": "redis", "topology": "sharded", "sharding": {"shards": 5}},
        "spec.sharding: spec.sharding.shards 5 x (1 + spec.sharding.replicasPerShard 1) = 10 members, more than "
        "the 9 a cluster may have",
    ),
    (
        {"engine": "redis", "topology": "sentinel", "sharding": {"shards": 3}},
        "spec.sharding: only allowed for topology 'sharded'; got 'sentinel'",
    ),
    ({"sharding": {"shards": 3}}, "spec.sharding: only allowed for engine 'redis'; got 'postgresql'"),
    ({"engine": "redis", "topology": "sentinel", "members": 2}, "spec.members: 2 is too few for topology 'sentinel'"),
    ({"persistence": {"mode": "aof"}}, "spec.persistence: only allowed for engine 'redis'; got 'postgresql'"),
    ({"users": [{"name": "app", "keys": ["a:*"]}]}, "spec.users[0].keys: only allowed for engine 'redis'"),
    (
        {
            "engine": "redis",
            "topology": "standalone",
            "users": [{"name": "app", "grants": [{"database": "d", "access": "all"}]}],
        },
        "spec.users[0].grants: not allowed for engine 'redis'; use keys and commands",
    ),
    (
        {"engine": "redis", "topology": "standalone", "databases": [{"name": "appdb"}]},
        "spec.databases: Redis has no named databases",
    ),
    (
        {"engine": "redis", "topology": "sentinel", "endpoint": {"proxy": {"enabled": True}}},
        "spec.endpoint.proxy.enabled: not available for engine 'redis'",
    ),
    (
        {"engine": "redis", "topology": "sentinel", "backup": {"incrementalSchedule": "hourly"}},
        "spec.backup.incrementalSchedule: not available for engine 'redis'; every backup is a full RDB snapshot",
    ),
    (
        {
            "engine": "redis",
            "topology": "sentinel",
            "backup": {"repository": {"type": "s3", "bucket": "b", "region": "r"}},
        },
        "spec.backup.repository.type: only 'member' is available for engine 'redis' yet",
    ),
    (
        {
            "engine": "mariadb",
            "version": "10.11",
            "backup": {"repository": {"type": "s3", "bucket": "b", "region": "r"}},
        },
        "spec.backup.repository.type: only 'member' is available for engine 'mariadb' yet",
    ),
    (
        {"engine": "mariadb", "version": "10.11", "backup": {"retention": {"diff": 2}}},
        "spec.backup.retention.diff: not available for engine 'mariadb'; backups are full or incremental",
    ),
    (
        {"topology": "galera"},
        (
            "spec.topology: 'galera' is not available for engine 'postgresql'; available: ha, replicated, standalone "
            "(galera does not exist for postgresql)"
        ),
    ),
    ({"topology": "ha", "members": 2}, "spec.members: 2 is too few for topology 'ha'; it needs at least 3"),
    ({"version": "16"}, "spec.version: '16' is not supported for engine 'postgresql'; supported: 15"),
    (
        {"topology": "standalone", "members": 3},
        "spec.members: 3 is not allowed for topology 'standalone'; it must be 1",
    ),
    ({"members": 1}, "spec.members: 1 is too few for topology 'replicated'; it needs at least 2"),
    (
        {"placement": [{"backend": "container", "count": 2}]},
        "spec.placement: counts add up to 2 but spec.members is 3",
    ),
    (
        {"placement": [{"backend": "container", "count": 2}, {"backend": "container", "count": 2}]},
        "spec.placement: counts add up to 4 but spec.members is 3",
    ),
    (
        {"placement": [{"backend": "container", "count": 3}, {"backend": "container"}]},
        "spec.placement: counts add up to 3 but spec.members is 3; nothing is left for spec.placement[1]",
    ),
    (
        {"placement": [{"backend": "container"}, {"backend": "container"}]},
        "spec.placement: spec.placement[0], spec.placement[1] have no count; only one entry may leave it out",
    ),
    (
        {"placement": [{"backend": "nova", "nova": {"cloud": "c", "flavor": "f"}}]},
        "spec.placement[0].nova: 'network' is a required property",
    ),
    (
        {
            "tls": {"enabled": False},
            "placement": [
                {"backend": "nova", "count": 2, "nova": {"cloud": "east", "flavor": "f", "network": "n"}},
                {"backend": "nova", "nova": {"cloud": "west", "flavor": "f", "network": "n"}},
            ],
        },
        "spec.tls.enabled: must be true when members span cloud 'east' and cloud 'west'; "
        "replication between them uses TLS only",
    ),
    (
        {"placement": [{"backend": "ironic", "ironic": {"cloud": "c"}}]},
        "spec.placement[0].backend: 'ironic' is not available yet; available: container, nova",
    ),
    (
        {
            "placement": [
                {"backend": "container", "count": 1},
                {"backend": "container", "container": {"subnet": "10.90.0.0/24"}},
            ]
        },
        (
            "spec.placement[1].container.subnet: '10.90.0.0/24' differs from '10.89.0.0/24' in spec.placement[0] "
            "for network 'trove' on host 'localhost'"
        ),
    ),
    (
        {"placement": [{"backend": "container", "container": {"subnet": "10.389.0.0/24"}}]},
        "spec.placement[0].container.subnet: '10.389.0.0/24' is not a valid IPv4 network",
    ),
    (
        {"placement": [{"backend": "container", "container": {"memory": "0m"}}]},
        "spec.placement[0].container.memory: '0m' must be greater than zero",
    ),
    ({"storage": {"size": "0Gi"}}, "spec.storage.size: '0Gi' must be greater than zero"),
    (
        {"topology": "standalone", "replication": {"mode": "sync"}},
        "spec.replication.mode: 'sync' requires topology ha or replicated; got 'standalone'",
    ),
    (
        {"replication": {"mode": "sync", "syncCount": 3}},
        "spec.replication.syncCount: 3 is more than spec.members - 1; it allows at most 2",
    ),
    (
        {"databases": [{"name": "appdb"}, {"name": "appdb"}]},
        "spec.databases[1].name: 'appdb' is a duplicate of spec.databases[0].name",
    ),
    ({"users": [{"name": "app"}, {"name": "app"}]}, "spec.users[1].name: 'app' is a duplicate of spec.users[0].name"),
    (
        {"databases": [{"name": "appdb", "owner": "bob"}]},
        "spec.databases[0].owner: 'bob' is not a user in spec.users; defined: none",
    ),
    (
        {"databases": [{"name": "appdb", "owner": "bob"}], "users": [{"name": "app"}, {"name": "al"}]},
        "spec.databases[0].owner: 'bob' is not a user in spec.users; defined: al, app",
    ),
    (
        {"users": [{"name": "app", "grants": [{"database": "shop", "access": "readonly"}]}]},
        "spec.users[0].grants[0].database: 'shop' is not a database in spec.databases; defined: none",
    ),
    (
        {
            "databases": [{"name": "shop"}],
            "users": [
                {
                    "name": "app",
                    "grants": [{"database": "shop", "access": "readonly"}, {"database": "shop", "access": "all"}],
                }
            ],
        },
        "spec.users[0].grants[1].database: 'shop' is already granted in spec.users[0].grants[0]",
    ),
    ({"users": [{"name": "postgres"}]}, "spec.users[0].name: 'postgres' is reserved; reserved: admin, default, mysql"),
    ({"users": [{"name": "trove_monitor"}]}, "spec.users[0].name: 'trove_monitor' is reserved;"),
    ({"databases": [{"name": "template1"}]}, "spec.databases[0].name: 'template1' is reserved;"),
    (
        {"backup": {"repository": {"type": "s3", "region": "eu-west-1"}}},
        "spec.backup.repository: 'bucket' is required for repository type 's3'",
    ),
    (
        {"backup": {"repository": {"type": "s3", "bucket": "backups"}}},
        "spec.backup.repository: 'region' is required for repository type 's3'",
    ),
    (
        {"backup": {"repository": {"bucket": "backups"}}},
        "spec.backup.repository.bucket: only allowed for repository type 's3'",
    ),
    (
        {"endpoint": {"allowedCidrs": ["10.0.0.0/8", "everywhere"]}},
        "spec.endpoint.allowedCidrs[1]: 'everywhere' is not a valid IPv4 or IPv6 network",
    ),
    (
        {"endpoint": {"proxy": {"enabled": True, "replicaPort": 5432}}},
        "spec.endpoint.proxy.replicaPort: 5432 is already spec.endpoint.port; choose another port",
    ),
    (
        {"endpoint": {"proxy": {"enabled": True, "primaryPort": 6000, "replicaPort": 6000}}},
        "spec.endpoint.proxy.replicaPort: 6000 is already spec.endpoint.proxy.primaryPort; choose another port",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), RULE_CASES)
def test_rule_messages(spec: dict[str, Any], expected: str, schema: dict[str, Any]) -> None:
    errors = check(minimal(**spec), schema)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize("name", sorted(_spec.RESERVED_USER_NAMES))
def test_every_reserved_user_name_is_refused(name: str, schema: dict[str, Any]) -> None:
    assert "is reserved" in one_error(minimal(users=[{"name": name}]), schema)


def test_rule_errors_are_all_reported(schema: dict[str, Any]) -> None:
    errors = check(minimal(version="16", members=1, databases=[{"name": "a", "owner": "x"}]), schema)
    assert errors == [
        "spec.databases[0].owner: 'x' is not a user in spec.users; defined: none",
        "spec.members: 1 is too few for topology 'replicated'; it needs at least 2",
        "spec.version: '16' is not supported for engine 'postgresql'; supported: 15",
    ]


def test_cidrs_accept_ipv6_and_host_bits(schema: dict[str, Any]) -> None:
    cidrs = ["192.168.1.7/24", "::/0", "fd00::1/64", "10.0.0.1"]
    cluster, errors = validate_cluster(minimal(endpoint={"allowedCidrs": cidrs}), schema)
    assert errors == []
    assert cluster["spec"]["endpoint"]["allowedCidrs"] == cidrs


# --- paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), "(document)"),
        (("spec",), "spec"),
        (("spec", "placement", 0, "backend"), "spec.placement[0].backend"),
        (("spec", "parameters", "log.level"), "spec.parameters['log.level']"),
        ((0,), "[0]"),
    ],
)
def test_format_path(path: tuple[Any, ...], expected: str) -> None:
    assert format_path(path) == expected


# --- properties -------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["trove.dbaas/v1", "Cluster", "postgresql", "replicated", "container", "10Gi", "sync"])
)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
# Also what YAML or Ansible may hand over: tuples, non-string keys, dates, bytes, sets.
odd_like = st.recursive(
    scalars | st.dates() | st.binary(max_size=3) | st.frozensets(st.integers(), max_size=2),
    lambda children: (
        st.tuples(children, children)
        | st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.integers() | st.booleans() | st.none(), children, max_size=3)
    ),
    max_leaves=15,
)


def assert_outcome(result: Any) -> None:
    cluster, errors = result
    assert isinstance(errors, list)
    assert all(isinstance(error, str) and error and "\n" not in error for error in errors)
    assert errors == sorted(set(errors))
    if cluster is None:
        assert errors
    else:
        assert errors == []
        assert isinstance(cluster, dict)
        json.dumps(cluster, allow_nan=False)


SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(value=json_like | odd_like)
def test_any_value_gives_a_result(value: Any, schema: dict[str, Any]) -> None:
    assert_outcome(validate_cluster(value, schema))


@SETTINGS
@given(spec=st.dictionaries(st.sampled_from(list(full()["spec"])), json_like | odd_like, max_size=6))
def test_any_spec_content_gives_a_result(spec: dict[str, Any], schema: dict[str, Any]) -> None:
    document = full()
    document["spec"].update(spec)
    assert_outcome(validate_cluster(document, schema))


def locations(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path inside a document, root included."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += locations(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += locations(value, (*path, index))
    return found


def mutate(document: dict[str, Any], data: st.DataObject) -> None:
    inner = locations(document)[1:]
    if not inner:  # everything was dropped already
        return
    path = data.draw(st.sampled_from(inner))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    operation = data.draw(st.sampled_from(["drop", "replace", "retype", "unknown", "wrap"]))
    target = parent[path[-1]]
    if operation == "drop":
        del parent[path[-1]]
    elif operation == "replace":
        parent[path[-1]] = data.draw(json_like | odd_like)
    elif operation == "retype":
        parent[path[-1]] = data.draw(st.sampled_from([str(target), [target], {"value": target}, None, 7, 2.5, True]))
    elif operation == "unknown" and isinstance(target, dict):
        target[data.draw(st.text(min_size=1, max_size=8))] = data.draw(scalars)
    else:
        parent[path[-1]] = [target, copy.deepcopy(target)]


@SETTINGS
@given(base=st.sampled_from([full, minimal]), data=st.data())
def test_mutated_documents_give_a_result(base: Callable[[], dict[str, Any]], data: Any, schema: dict[str, Any]) -> None:
    document = base()
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        mutate(document, data)
    assert_outcome(validate_cluster(document, schema))


@SETTINGS
@given(members=st.integers(min_value=2, max_value=9), data=st.data())
def test_placement_counts_always_add_up(members: int, data: Any, schema: dict[str, Any]) -> None:
    counts = []
    left = members
    while left:
        counts.append(data.draw(st.integers(min_value=1, max_value=left)))
        left -= counts[-1]
    open_entry = data.draw(st.integers(min_value=0, max_value=len(counts)))  # == len(counts): all explicit
    placement = [
        {"backend": "container"} if index == open_entry else {"backend": "container", "count": count}
        for index, count in enumerate(counts)
    ]
    cluster, errors = validate_cluster(minimal(members=members, placement=placement), schema)
    assert errors == []
    assert [entry["count"] for entry in cluster["spec"]["placement"]] == counts
