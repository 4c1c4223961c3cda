"""Validation and normalization of trove.dbaas cluster documents (apiVersion trove.dbaas/v1).

The JSON Schema (schemas/cluster-v1.json) checks shape and types. This module adds what a schema
expresses badly: engine/topology availability, placement counts, references between users and
databases, engine-specific defaults. Everything downstream can then rely on every key being present.

Only the controller uses this (through the cluster_spec action plugin), so jsonschema is needed there only.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import ValidationError
except ImportError:  # reported by validate_cluster, so the import sanity test and targets do not need it
    HAS_JSONSCHEMA = False
else:
    HAS_JSONSCHEMA = True

API_VERSION = "trove.dbaas/v1"
SUPPORTED_API_VERSIONS = (API_VERSION,)
ROOT = "(document)"
MAX_DEPTH = 64
# Longest key shown whole in a path (quotes and escapes included); longer ones are cut.
MAX_KEY_SHOWN = 64

# Every engine/topology pair the project intends to support; used to tell "does not exist" from "not yet".
PLANNED_TOPOLOGIES: dict[str, tuple[str, ...]] = {
    "postgresql": ("standalone", "replicated", "ha"),
    "mariadb": ("standalone", "replicated", "galera"),
    "redis": ("standalone", "sentinel", "sharded"),
}
# Pairs implemented now; an engine is available when it has at least one topology here.
AVAILABLE_TOPOLOGIES: dict[str, tuple[str, ...]] = {
    "postgresql": ("standalone", "replicated", "ha"),
    "mariadb": ("standalone", "replicated", "galera"),
    "redis": ("standalone", "sentinel", "sharded"),
}
ENGINE_VERSIONS: dict[str, tuple[str, ...]] = {
    "postgresql": ("15",),
    "mariadb": ("10.11",),
    "redis": ("7",),
}
DEFAULT_PORTS: dict[str, int] = {"postgresql": 5432, "mariadb": 3306, "redis": 6379}
# (min, max) members per topology; topologies not listed only get the schema's 1..9.
# ha runs its consensus store (etcd) on the members, sentinel a Sentinel on every member: 3 is the
# fewest that survive losing one.
MEMBER_LIMITS: dict[str, tuple[int, int]] = {
    "standalone": (1, 1),
    "replicated": (2, 9),
    "ha": (3, 9),
    "sentinel": (3, 9),
    "sharded": (3, 9),
    "galera": (3, 9),
}
# Why a topology needs its fewest members, added to the "too few" message.
MEMBER_LIMIT_REASONS: dict[str, str] = {
    "galera": "a Galera primary component needs a majority of the members, so 3 is the fewest that survive losing one",
}
DEFAULT_MEMBERS: dict[str, int] = {"standalone": 1}
DEFAULT_MEMBERS_OTHERWISE = 3
SYNC_TOPOLOGIES = frozenset({"replicated", "ha"})
# Fields only one engine reads, as (path in the spec, the engine).
ENGINE_ONLY_FIELDS = (("persistence", "redis"), ("sharding", "redis"))
# Fields only one topology reads, as (path in the spec, the topology).
TOPOLOGY_ONLY_FIELDS = (("sharding", "sharded"),)
# Topologies whose member count follows from spec.sharding: shards x (1 + replicasPerShard).
SHARDED_TOPOLOGIES = frozenset({"sharded"})
ENGINE_ONLY_USER_FIELDS = (("keys", "redis"), ("commands", "redis"))
# Engines whose synchronous mode waits for exactly one replica (MariaDB semi-synchronous replication).
SINGLE_ACK_ENGINES = frozenset({"mariadb"})
BACKENDS = ("container", "ironic", "nova")
AVAILABLE_BACKENDS = frozenset({"container", "nova"})
# Repository directory per repository type: on the repository member's volume, or a bucket prefix.
DEFAULT_BACKUP_PATHS: dict[str, str] = {"member": "/srv/data/backup", "s3": "/trove-dbaas"}
# Names the roles create themselves or that engines ship with.
RESERVED_PREFIX = "trove_"
RESERVED_USER_NAMES = frozenset({"admin", "default", "mysql", "postgres", "redis", "replicator", "root", "trove"})
RESERVED_DATABASE_NAMES = frozenset(
    {"information_schema", "mysql", "performance_schema", "postgres", "sys", "template0", "template1", "trove"}
)
# Extra words after "unknown field" for keys people are likely to try.
UNKNOWN_FIELD_HINTS: dict[str, str] = {
    "password": "passwords are generated and kept in the secrets directory, never written in the document",
}

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_SIZE = re.compile(r"([0-9]+)[A-Za-z]+\Z")
# Checked in order (bool before int); Ansible passes subclasses such as _AnsibleTaggedList.
_JSON_TYPE_NAMES = (
    (Mapping, "mapping"),
    ((list, tuple), "list"),
    (str, "string"),
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (type(None), "null"),
)


def format_path(path: Iterable[str | int]) -> str:
    """Render a location as `spec.placement[0].backend`; odd keys are quoted, the root is `(document)`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part) and len(part) <= MAX_KEY_SHOWN:
            out += f".{part}" if out else part
        else:
            out += f"[{_quoted_key(part)}]"
    return out or ROOT


def _quoted_key(key: str) -> str:
    # A huge or binary unknown key must not make a huge message: cut it until its repr is short.
    shown = repr(key)
    while len(shown) > MAX_KEY_SHOWN:
        key = key[: len(key) // 2]
        shown = repr(f"{key}...")
    return shown


def load_schema(path: str) -> dict[str, Any]:
    """Read and check the JSON Schema file; raises OSError/ValueError (or SchemaError) when it is unusable."""
    return copy.deepcopy(_load_schema_cached(path))


def validate_cluster(document: Any, schema: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """Return (normalized cluster, []) or (None, sorted unique error messages); never raises for bad input."""
    if not HAS_JSONSCHEMA:
        return None, [f"{ROOT}: the Python library jsonschema is required on the controller"]
    try:
        return _validate(document, schema)
    except RecursionError:
        return None, [f"{ROOT}: nested too deeply"]


def to_plain(document: Any) -> tuple[Any, list[str]]:
    """Copy into plain JSON types (dict/list/str/int/float/bool/None) and report what JSON cannot hold."""
    errors: list[str] = []
    return _plain(document, (), errors), _finish(errors)


def schema_errors(document: Any, schema: Mapping[str, Any]) -> list[str]:
    """Messages for every JSON Schema violation in a plain document."""
    validator = _validator_class()(schema)
    errors: list[str] = []
    for error in validator.iter_errors(document):
        errors.extend(_schema_messages(error))
    return _finish(errors)


def apply_defaults(document: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a schema-valid document with every default filled in."""
    doc = copy.deepcopy(document)
    spec = doc["spec"]
    engine, topology = spec["engine"], spec["topology"]
    spec.setdefault("version", ENGINE_VERSIONS[engine][0])
    if topology in SHARDED_TOPOLOGIES:
        sharding = _fill(spec.setdefault("sharding", {}), _subschema(schema, "spec", "sharding"), schema)
        spec["sharding"] = sharding
        spec.setdefault("members", sharded_members(sharding))
    spec.setdefault("members", DEFAULT_MEMBERS.get(topology, DEFAULT_MEMBERS_OTHERWISE))
    spec.setdefault("endpoint", {}).setdefault("port", DEFAULT_PORTS[engine])
    placement = spec.setdefault("placement", copy.deepcopy(_subschema(schema, "spec", "placement")["default"]))
    for entry in placement:
        # Only the options object of the entry's own backend exists; the fill below gives its defaults.
        entry.setdefault(entry["backend"], {})
    _fill_missing_count(placement, spec["members"])
    if engine == "redis":
        spec.setdefault("persistence", {})
    repository = spec.setdefault("backup", {}).setdefault("repository", {})
    repository.setdefault("path", DEFAULT_BACKUP_PATHS[repository.get("type", "member")])
    return _fill(doc, schema, schema)


def sharded_members(sharding: Mapping[str, Any]) -> int:
    """Members of a sharded cluster: a primary and replicasPerShard replicas per shard."""
    return int(sharding["shards"]) * (1 + int(sharding["replicasPerShard"]))


def semantic_errors(cluster: Mapping[str, Any]) -> list[str]:
    """Messages for the rules across fields, on a document returned by apply_defaults."""
    spec = cluster["spec"]
    errors: list[str] = []
    for check in (
        _check_engine,
        _check_engine_fields,
        _check_version,
        _check_sharding,
        _check_members,
        _check_placement,
        _check_replication,
        _check_sizes,
        _check_networks,
        _check_ports,
        _check_databases,
        _check_users,
        _check_backup,
    ):
        errors.extend(check(spec))
    return _finish(errors)


# --- pipeline -------------------------------------------------------------------------------------


def _validate(document: Any, schema: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    if not isinstance(document, Mapping):
        return None, [f"{ROOT}: expected a mapping, got {_type_name(document)}"]
    plain, errors = to_plain(document)
    if errors:
        return None, errors
    if "apiVersion" in plain and plain["apiVersion"] not in SUPPORTED_API_VERSIONS:
        # Another version has another schema: checking the rest against v1 would only add noise.
        supported = ", ".join(SUPPORTED_API_VERSIONS)
        return None, [f"apiVersion: {_short(plain['apiVersion'])} is not supported; supported: {supported}"]
    errors = schema_errors(plain, schema)
    if errors:
        return None, errors
    cluster = apply_defaults(plain, schema)
    errors = semantic_errors(cluster)
    return (None, errors) if errors else (cluster, [])


def _finish(errors: Iterable[str]) -> list[str]:
    return sorted(set(errors))


def _plain(value: Any, path: tuple[Any, ...], errors: list[str]) -> Any:
    if len(path) > MAX_DEPTH:
        errors.append(f"{format_path(path)}: nested deeper than {MAX_DEPTH} levels")
        return None
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                out[str.__str__(key)] = _plain(item, (*path, key), errors)
            else:
                errors.append(f"{format_path(path)}: keys must be strings, got {_type_name(key)} {_short(key)}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, (*path, index), errors) for index, item in enumerate(value)]
    return _plain_scalar(value, path, errors)


def _plain_scalar(value: Any, path: tuple[Any, ...], errors: list[str]) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        errors.append(f"{format_path(path)}: {value!r} is not a finite number")
        return None
    if isinstance(value, str):
        return str.__str__(value)
    # dates from unquoted YAML timestamps, bytes, sets, objects: none has a JSON form
    errors.append(f"{format_path(path)}: a value of type {_type_name(value)} is not allowed; use a string")
    return None


def _type_name(value: Any) -> str:
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    # the first public class, so a tagged date still reads "date"
    return next(kind.__name__ for kind in type(value).__mro__ if not kind.__name__.startswith("_"))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# --- JSON Schema ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load_schema_cached(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        schema = json.load(handle)
    if HAS_JSONSCHEMA:
        _validator_class().check_schema(schema)
    return schema


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    # JSON Schema counts 3.0 as an integer; members/ports/counts must really be ints for the roles.
    def is_integer(checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    type_checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer)
    return validators.extend(Draft202012Validator, validators={"pattern": _pattern}, type_checker=type_checker)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterable[Any]:
    # Python's `$` also matches before a final newline; names end up in commands, so anchor for real.
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _schema_messages(error: Any) -> list[str]:
    path: tuple[Any, ...] = tuple(error.absolute_path)
    where = format_path(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        return [_unknown_field((*path, key), allowed) for key in error.instance if key not in allowed]
    if error.validator == "not" and error.validator_value == {}:  # the schema's way to forbid a key
        if path and path[-1] in BACKENDS:
            return [f"{where}: only allowed when backend is {path[-1]!r}"]
        return [f"{where}: not allowed here"]
    if error.validator == "const":
        return [f"{where}: {_short(error.instance)} is not supported; expected {error.validator_value!r}"]
    if error.validator == "type" and path[:-1] == ("spec", "parameters"):
        return [f"{where}: {_short(error.instance)} is not a scalar; parameter values are strings, numbers or booleans"]
    message = _shorten(error.message, error.instance)
    if error.validator == "type" and path == ("spec", "version") and isinstance(error.instance, (int, float)):
        message += f' (quote it: "{error.instance}")'
    return [f"{where}: {message}"]


def _unknown_field(path: tuple[Any, ...], allowed: list[str]) -> str:
    message = f"{format_path(path)}: unknown field; allowed: {', '.join(allowed)}"
    hint = UNKNOWN_FIELD_HINTS.get(path[-1])
    return f"{message} ({hint})" if hint else message


def _shorten(message: str, instance: Any) -> str:
    # jsonschema starts most messages with repr(instance), which can be a whole subtree.
    full = repr(instance)
    return _short(instance) + message[len(full) :] if message.startswith(full) else message


# --- defaults -------------------------------------------------------------------------------------


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    # Only local "#/$defs/..." references are used; keywords next to $ref win over the target's.
    while isinstance(schema, Mapping) and "$ref" in schema:
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _subschema(schema: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node = schema
    for key in keys:
        node = _resolve(node["properties"][key], schema)
    return node


def _fill(value: Any, schema: Any, root: Mapping[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, dict) and "properties" in schema:
        out = {}
        for key, raw in schema["properties"].items():
            sub = _resolve(raw, root)
            if key in value:
                out[key] = _fill(value[key], sub, root)
            elif isinstance(sub, Mapping) and "default" in sub:
                out[key] = _fill(copy.deepcopy(sub["default"]), sub, root)
        return out
    if isinstance(value, list) and "items" in schema:
        return [_fill(item, schema["items"], root) for item in value]
    return value


def _fill_missing_count(placement: list[dict[str, Any]], members: int) -> None:
    # A single entry without count takes the rest; other cases are reported by _check_placement.
    missing = [entry for entry in placement if "count" not in entry]
    rest = members - sum(entry["count"] for entry in placement if "count" in entry)
    if len(missing) == 1 and rest >= 1:
        missing[0]["count"] = rest


# --- rules ----------------------------------------------------------------------------------------


def _names(values: Iterable[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def _check_engine(spec: Mapping[str, Any]) -> list[str]:
    engine, topology = spec["engine"], spec["topology"]
    available = AVAILABLE_TOPOLOGIES.get(engine, ())
    if not available:
        engines = _names(name for name, topologies in AVAILABLE_TOPOLOGIES.items() if topologies)
        return [f"spec.engine: {engine!r} is not available yet; available: {engines}"]
    if topology in available:
        return []
    message = f"spec.topology: {topology!r} is not available for engine {engine!r}"
    if topology in PLANNED_TOPOLOGIES.get(engine, ()):
        return [f"{message} yet; available: {_names(available)}"]
    return [f"{message}; available: {_names(available)} ({topology} does not exist for {engine})"]


def _only_for(
    where: str, node: Mapping[str, Any], fields: Iterable[tuple[str, str]], kind: str, value: str
) -> list[str]:
    """Messages for fields of `node` that only `kind` (engine or topology) `owner` reads, when `value` is another."""
    return [
        f"{where}.{field}: only allowed for {kind} {owner!r}; got {value!r}"
        for field, owner in fields
        if field in node and value != owner
    ]


def _check_engine_fields(spec: Mapping[str, Any]) -> list[str]:
    engine = spec["engine"]
    errors = _only_for("spec", spec, ENGINE_ONLY_FIELDS, "engine", engine)
    for index, user in enumerate(spec["users"]):
        errors += _only_for(f"spec.users[{index}]", user, ENGINE_ONLY_USER_FIELDS, "engine", engine)
        if engine == "redis" and user["grants"]:
            errors.append(f"spec.users[{index}].grants: not allowed for engine 'redis'; use keys and commands")
    if engine == "redis":
        errors += _redis_unavailable(spec)
    if engine == "mariadb":
        errors += _mariadb_unavailable(spec)
    return errors


def _mariadb_unavailable(spec: Mapping[str, Any]) -> list[str]:
    backup = spec["backup"]
    errors = []
    if backup["repository"]["type"] != "member":
        errors.append("spec.backup.repository.type: only 'member' is available for engine 'mariadb' yet")
    if "diff" in backup.get("retention", {}):
        errors.append("spec.backup.retention.diff: not available for engine 'mariadb'; backups are full or incremental")
    return errors


def _redis_unavailable(spec: Mapping[str, Any]) -> list[str]:
    errors = []
    if spec["databases"]:
        errors.append("spec.databases: Redis has no named databases; separate applications with spec.users[].keys")
    if spec["endpoint"]["proxy"]["enabled"]:
        errors.append(
            "spec.endpoint.proxy.enabled: not available for engine 'redis'; clients ask Sentinel for the primary"
        )
    backup = spec["backup"]
    if "incrementalSchedule" in backup:
        errors.append(
            "spec.backup.incrementalSchedule: not available for engine 'redis'; every backup is a full RDB snapshot"
        )
    if backup["repository"]["type"] != "member":
        errors.append("spec.backup.repository.type: only 'member' is available for engine 'redis' yet")
    return errors


def _check_sharding(spec: Mapping[str, Any]) -> list[str]:
    topology = spec["topology"]
    errors = _only_for("spec", spec, TOPOLOGY_ONLY_FIELDS, "topology", topology)
    if topology not in SHARDED_TOPOLOGIES or "sharding" not in spec:
        return errors
    sharding, members = spec["sharding"], spec["members"]
    wanted = sharded_members(sharding)
    shards, replicas = sharding["shards"], sharding["replicasPerShard"]
    formula = f"spec.sharding.shards {shards} x (1 + spec.sharding.replicasPerShard {replicas}) = {wanted}"
    if members != wanted:
        errors.append(f"spec.members: {members} does not match {formula}; set spec.members to {wanted} or leave it out")
    high = MEMBER_LIMITS[topology][1]
    if wanted > high:
        errors.append(f"spec.sharding: {formula} members, more than the {high} a cluster may have")
    return errors


def _check_version(spec: Mapping[str, Any]) -> list[str]:
    supported = ENGINE_VERSIONS[spec["engine"]]
    if spec["version"] in supported:
        return []
    version, engine = _short(spec["version"]), spec["engine"]
    return [f"spec.version: {version} is not supported for engine {engine!r}; supported: {', '.join(supported)}"]


def _check_members(spec: Mapping[str, Any]) -> list[str]:
    members, topology = spec["members"], spec["topology"]
    low, high = MEMBER_LIMITS.get(topology, (1, 9))
    if low == high and members != low:
        return [f"spec.members: {members} is not allowed for topology {topology!r}; it must be {low}"]
    if members < low:
        reason = f" ({MEMBER_LIMIT_REASONS[topology]})" if topology in MEMBER_LIMIT_REASONS else ""
        return [f"spec.members: {members} is too few for topology {topology!r}; it needs at least {low}{reason}"]
    if members > high:
        return [f"spec.members: {members} is too many for topology {topology!r}; it allows at most {high}"]
    return []


def _check_placement(spec: Mapping[str, Any]) -> list[str]:
    placement, members = spec["placement"], spec["members"]
    errors = [
        f"spec.placement[{index}].backend: {entry['backend']!r} is not available yet; "
        f"available: {_names(AVAILABLE_BACKENDS)}"
        for index, entry in enumerate(placement)
        if entry["backend"] not in AVAILABLE_BACKENDS
    ]
    missing = [index for index, entry in enumerate(placement) if "count" not in entry]
    total = sum(entry.get("count", 0) for entry in placement)
    if len(missing) > 1:
        entries = ", ".join(f"spec.placement[{index}]" for index in missing)
        errors.append(f"spec.placement: {entries} have no count; only one entry may leave it out")
    elif missing:
        errors.append(
            f"spec.placement: counts add up to {total} but spec.members is {members}; "
            f"nothing is left for spec.placement[{missing[0]}]"
        )
    elif total != members:
        errors.append(f"spec.placement: counts add up to {total} but spec.members is {members}")
    return errors + _check_container_networks(placement) + _check_sites_tls(spec)


def _site(entry: Mapping[str, Any]) -> str:
    """Where a placement entry's members run: a podman host or a cloud."""
    options = entry.get(entry["backend"]) or {}
    return f"cloud {options['cloud']!r}" if "cloud" in options else f"podman host {options.get('host', 'localhost')!r}"


def _check_sites_tls(spec: Mapping[str, Any]) -> list[str]:
    # Replication between clouds (or a cloud and a podman host) crosses networks the cluster does not own.
    sites = list(dict.fromkeys(_site(entry) for entry in spec["placement"]))
    if len(sites) < 2 or not any(site.startswith("cloud") for site in sites) or spec["tls"]["enabled"]:
        return []
    span = " and ".join(sites)
    return [f"spec.tls.enabled: must be true when members span {span}; replication between them uses TLS only"]


def _check_container_networks(placement: list[Mapping[str, Any]]) -> list[str]:
    # One podman network on one host has one subnet; two entries cannot disagree about it.
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    errors = []
    for index, entry in enumerate(placement):
        options = entry.get("container")
        if entry["backend"] != "container" or options is None:
            continue
        key = (options["host"], options["network"])
        first, subnet = seen.setdefault(key, (index, options["subnet"]))
        if subnet != options["subnet"]:
            errors.append(
                f"spec.placement[{index}].container.subnet: {options['subnet']!r} differs from "
                f"{subnet!r} in spec.placement[{first}] for network {key[1]!r} on host {key[0]!r}"
            )
    return errors


def _check_replication(spec: Mapping[str, Any]) -> list[str]:
    replication, members, topology = spec["replication"], spec["members"], spec["topology"]
    if replication["mode"] != "sync":
        return []
    if topology not in SYNC_TOPOLOGIES:
        needed = " or ".join(sorted(SYNC_TOPOLOGIES))
        return [f"spec.replication.mode: 'sync' requires topology {needed}; got {topology!r}"]
    if spec["engine"] in SINGLE_ACK_ENGINES and replication["syncCount"] != 1:
        count, engine = replication["syncCount"], spec["engine"]
        return [
            f"spec.replication.syncCount: {count} is not allowed for engine {engine!r}; "
            "semi-synchronous replication waits for one replica, so it must be 1"
        ]
    if replication["syncCount"] > members - 1:
        count = replication["syncCount"]
        return [f"spec.replication.syncCount: {count} is more than spec.members - 1; it allows at most {members - 1}"]
    return []


def _check_sizes(spec: Mapping[str, Any]) -> list[str]:
    # The schema patterns accept 0; a zero-sized volume or memory limit is never meant.
    sizes = [(("spec", "storage", "size"), spec["storage"]["size"])]
    sizes += [
        (("spec", "placement", index, "container", "memory"), entry["container"]["memory"])
        for index, entry in enumerate(spec["placement"])
        if "container" in entry
    ]
    errors = []
    for path, size in sizes:
        match = _SIZE.match(size)
        if match and int(match.group(1)) == 0:
            errors.append(f"{format_path(path)}: {size!r} must be greater than zero")
    return errors


def _check_networks(spec: Mapping[str, Any]) -> list[str]:
    errors = []
    for index, cidr in enumerate(spec["endpoint"]["allowedCidrs"]):
        if not _is_network(cidr):
            errors.append(f"spec.endpoint.allowedCidrs[{index}]: {_short(cidr)} is not a valid IPv4 or IPv6 network")
    for index, entry in enumerate(spec["placement"]):
        subnet = entry.get("container", {}).get("subnet")
        if subnet is not None and not _is_network(subnet):
            errors.append(f"spec.placement[{index}].container.subnet: {subnet!r} is not a valid IPv4 network")
    return errors


def _check_ports(spec: Mapping[str, Any]) -> list[str]:
    endpoint = spec["endpoint"]
    proxy = endpoint["proxy"]
    if not proxy["enabled"]:
        return []
    taken = {"spec.endpoint.port": endpoint["port"]}
    errors = []
    for field in ("primaryPort", "replicaPort"):
        clash = [name for name, port in taken.items() if port == proxy[field]]
        if clash:
            errors.append(f"spec.endpoint.proxy.{field}: {proxy[field]} is already {clash[0]}; choose another port")
        taken[f"spec.endpoint.proxy.{field}"] = proxy[field]
    return errors


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _duplicates(items: list[Mapping[str, Any]], where: str) -> list[str]:
    first: dict[str, int] = {}
    errors = []
    for index, item in enumerate(items):
        seen = first.setdefault(item["name"], index)
        if seen != index:
            errors.append(f"{where}[{index}].name: {item['name']!r} is a duplicate of {where}[{seen}].name")
    return errors


def _reserved(name: str, reserved: frozenset[str], path: str) -> list[str]:
    if name in reserved or name.startswith(RESERVED_PREFIX):
        names = ", ".join(sorted(reserved))
        return [f"{path}: {name!r} is reserved; reserved: {names} and names starting with {RESERVED_PREFIX}"]
    return []


def _check_databases(spec: Mapping[str, Any]) -> list[str]:
    databases, users = spec["databases"], {user["name"] for user in spec["users"]}
    errors = _duplicates(databases, "spec.databases")
    for index, database in enumerate(databases):
        errors += _reserved(database["name"], RESERVED_DATABASE_NAMES, f"spec.databases[{index}].name")
        owner = database["owner"]
        if owner is not None and owner not in users:
            errors.append(
                f"spec.databases[{index}].owner: {owner!r} is not a user in spec.users; defined: {_names(users)}"
            )
    return errors


def _check_users(spec: Mapping[str, Any]) -> list[str]:
    users, databases = spec["users"], {database["name"] for database in spec["databases"]}
    errors = _duplicates(users, "spec.users")
    for index, user in enumerate(users):
        where = f"spec.users[{index}]"
        errors += _reserved(user["name"], RESERVED_USER_NAMES, f"{where}.name")
        granted: dict[str, int] = {}
        for number, grant in enumerate(user["grants"]):
            name, path = grant["database"], f"{where}.grants[{number}].database"
            if name not in databases:
                errors.append(f"{path}: {name!r} is not a database in spec.databases; defined: {_names(databases)}")
            if granted.setdefault(name, number) != number:
                errors.append(f"{path}: {name!r} is already granted in {where}.grants[{granted[name]}]")
    return errors


def _check_backup(spec: Mapping[str, Any]) -> list[str]:
    repository = spec["backup"]["repository"]
    if repository["type"] != "s3":
        return [
            f"spec.backup.repository.{key}: only allowed for repository type 's3'"
            for key in ("bucket", "endpoint", "region")
            if key in repository
        ]
    return [
        f"spec.backup.repository: {key!r} is required for repository type 's3'"
        for key in ("bucket", "region")
        if key not in repository
    ]
