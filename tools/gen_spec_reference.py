#!/usr/bin/env python3
"""Write docs/cluster-spec.md, the reference of the cluster document, from the schema and the rules module.

python tools/gen_spec_reference.py           # write the file
python tools/gen_spec_reference.py --check   # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = ROOT / "collections" / "ansible_collections" / "trove" / "dbaas"
SCHEMA_PATH = COLLECTION / "schemas" / "cluster-v1.json"
OUTPUT = ROOT / "docs" / "cluster-spec.md"
EXAMPLE = ROOT / "examples" / "postgresql-replicated.yml"

sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.trove.dbaas.plugins.module_utils import _spec  # noqa: E402

RULES_ANCHOR = "#rules-beyond-the-schema"
ENGINES_ANCHOR = "#engines-and-topologies"


def _computed_defaults() -> dict[str, str]:
    """Defaults set by the cluster_spec module rather than by the schema, keyed by field path."""
    members = ", ".join(f"{count} for {name}" for name, count in sorted(_spec.DEFAULT_MEMBERS.items()))
    return {
        "spec.version": f"[per engine]({ENGINES_ANCHOR})",
        "spec.members": f"{members}, {_spec.DEFAULT_MEMBERS_OTHERWISE} otherwise",
        "spec.endpoint.port": f"[per engine]({ENGINES_ANCHOR})",
        "spec.placement[].count": "the rest of `spec.members`",
        "spec.backup.repository.path": ", ".join(
            f"`{path}` for type `{kind}`" for kind, path in _spec.DEFAULT_BACKUP_PATHS.items()
        ),
        **{f"spec.placement[].{backend}": "`{}` for the entry's own backend" for backend in _spec.BACKENDS},
    }


# --- schema walking -------------------------------------------------------------------------------


def resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Follow local $refs; keywords next to $ref win, as in the module."""
    out = dict(node)
    while "$ref" in out:
        target: Any = schema
        for part in out.pop("$ref").removeprefix("#/").split("/"):
            target = target[part]
        out = {**target, **out}
    return out


def definition(node: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """Description of what a node is: the referenced definition's own text when there is one."""
    if "$ref" in node:
        return definition(resolve({"$ref": node["$ref"]}, schema), schema)
    return node.get("description", "")


def objects(
    node: Mapping[str, Any], path: str, schema: Mapping[str, Any]
) -> Iterator[tuple[str, str, list[tuple[str, dict[str, Any], bool]]]]:
    """Yield (path, description, [(field path, resolved field schema, required)]) for every object, depth first."""
    required = set(node.get("required", ()))
    fields = []
    nested = []
    for key, raw in node["properties"].items():
        field_path = f"{path}.{key}" if path else key
        field = resolve(raw, schema)
        fields.append((field_path, field, key in required))
        if "properties" in field:
            nested.append((field, field_path, definition(raw, schema)))
        elif field.get("type") == "array" and "items" in field:
            items = resolve(field["items"], schema)
            if "properties" in items:
                nested.append((items, f"{field_path}[]", definition(field["items"], schema)))
    yield path, node.get("description", ""), fields
    for child, child_path, text in nested:
        yield from objects({**child, "description": text}, child_path, schema)


# --- cell rendering -------------------------------------------------------------------------------


def flow(value: Any) -> str:
    """A value as a one-line YAML flow value."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).removesuffix("\n...\n").strip()


def code(value: Any) -> str:
    return f"`{flow(value)}`"


def cell(text: str) -> str:
    """Escape a table cell: HTML outside code spans, pipes everywhere (GitHub needs it inside code spans too)."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def type_name(field: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    if "const" in field:
        return _json_type(field["const"])
    if "enum" in field:
        return _either(sorted({_json_type(value) for value in field["enum"]}))
    kind = field.get("type", "any")
    if kind == "array":
        return f"list of {type_name(resolve(field.get('items', {}), schema), schema)}"
    if kind == "object" and isinstance(field.get("additionalProperties"), Mapping):
        return f"map of {type_name(resolve(field['additionalProperties'], schema), schema)}"
    if isinstance(kind, list):
        return _either(kind)
    return kind


def _either(names: list[str]) -> str:
    return " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return "object"


def allowed(field: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    parts = []
    if "const" in field:
        parts.append(code(field["const"]))
    if "enum" in field:
        parts.append(", ".join(code(value) for value in field["enum"]))
    parts += _bounds(field)
    if "pattern" in field:
        parts.append(f"pattern `{field['pattern']}`")
    if "pattern" in field.get("propertyNames", {}):
        parts.append(f"keys match `{field['propertyNames']['pattern']}`")
    if field.get("type") == "array" and "items" in field:
        inner = allowed(resolve(field["items"], schema), schema) if "properties" not in field["items"] else ""
        if inner:
            parts.append(f"each entry: {inner}")
    return "; ".join(parts)


def _bounds(field: Mapping[str, Any]) -> list[str]:
    parts = []
    if "minimum" in field and "maximum" in field:
        parts.append(f"{field['minimum']} to {field['maximum']}")
    else:
        low = f"at least {field['minimum']}" if "minimum" in field else ""
        low = f"more than {field['exclusiveMinimum']}" if "exclusiveMinimum" in field else low
        high = f"at most {field['maximum']}" if "maximum" in field else ""
        high = f"less than {field['exclusiveMaximum']}" if "exclusiveMaximum" in field else high
        if low or high:
            parts.append(", ".join(filter(None, (low, high))))
    if field.get("minLength") == 1:
        parts.append("not empty")
    elif "minLength" in field:
        parts.append(f"at least {field['minLength']} characters")
    if "minItems" in field:
        parts.append(f"at least {field['minItems']} {'entry' if field['minItems'] == 1 else 'entries'}")
    return parts


def default(path: str, field: Mapping[str, Any], required: bool, computed: Mapping[str, str]) -> str:
    if required:
        return "**required**"
    if path in computed:
        return computed[path]
    if "default" in field:
        return code(field["default"])
    return ""


def description(field: Mapping[str, Any]) -> str:
    text = field.get("description", "")
    examples = field.get("examples", ())
    if examples:
        label = "Example" if len(examples) == 1 else "Examples"
        text += f" {label}: " + ", ".join(code(example) for example in examples) + "."
    return text.strip()


def object_tables(schema: Mapping[str, Any]) -> list[str]:
    computed = _computed_defaults()
    seen: set[str] = set()
    lines: list[str] = []
    for path, text, fields in objects(schema, "", schema):
        lines += ["", f"### {'Top level' if not path else f'`{path}`'}", ""]
        if path and text:
            lines += [text, ""]
        lines += ["| Path | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
        for field_path, field, required in fields:
            seen.add(field_path)
            row = [
                f"`{field_path}`",
                type_name(field, schema),
                default(field_path, field, required, computed),
                allowed(field, schema),
                description(field),
            ]
            lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    unknown = sorted(set(computed) - seen)
    if unknown:
        raise SystemExit(f"computed defaults for paths the schema does not have: {', '.join(unknown)}")
    return lines


# --- rules ----------------------------------------------------------------------------------------


def _names(values: Any) -> str:
    return ", ".join(f"`{value}`" for value in values) or "none"


def rules(schema: Mapping[str, Any]) -> list[str]:
    spec = schema["properties"]["spec"]["properties"]
    lines = [
        "",
        "## Rules beyond the schema",
        "",
        "The `trove.dbaas.cluster_spec` module applies these after the schema, on the document with its defaults "
        "filled in. Every problem is reported, each on its own line starting with the path of the field.",
        "",
        "### Engines and topologies",
        "",
        "An engine is available when at least one of its topologies is. Planned topologies are accepted by the "
        "schema but refused as not available yet; a topology that is not planned for an engine does not exist for it.",
        "",
        "| Engine | Available topologies | Planned, not available yet | Versions | Default version | Default port |",
        "|---|---|---|---|---|---|",
    ]
    for engine in spec["engine"]["enum"]:
        available = _spec.AVAILABLE_TOPOLOGIES.get(engine, ())
        planned = [name for name in _spec.PLANNED_TOPOLOGIES.get(engine, ()) if name not in available]
        versions = _spec.ENGINE_VERSIONS[engine]
        lines.append(
            f"| `{engine}` | {_names(available)} | {_names(planned)} | {_names(versions)} | `{versions[0]}` "
            f"| {_spec.DEFAULT_PORTS[engine]} |"
        )
    lines += _member_rules(spec)
    lines += _other_rules(spec)
    return lines


def _member_rules(spec: Mapping[str, Any]) -> list[str]:
    members = spec["members"]
    lines = [
        "",
        "### Members",
        "",
        "| Topology | Default members | Minimum | Maximum |",
        "|---|---|---|---|",
    ]
    for topology in spec["topology"]["enum"]:
        low, high = _spec.MEMBER_LIMITS.get(topology, (members["minimum"], members["maximum"]))
        count = _spec.DEFAULT_MEMBERS.get(topology, _spec.DEFAULT_MEMBERS_OTHERWISE)
        lines.append(f"| `{topology}` | {count} | {low} | {high} |")
    return lines


def _other_rules(spec: Mapping[str, Any]) -> list[str]:
    later = sorted(set(_spec.BACKENDS) - _spec.AVAILABLE_BACKENDS)
    sync = " or ".join(f"`{name}`" for name in sorted(_spec.SYNC_TOPOLOGIES))
    hints = " ".join(
        f"For a `{key}` field the message adds: {text}." for key, text in sorted(_spec.UNKNOWN_FIELD_HINTS.items())
    )
    return [
        "",
        "### Placement",
        "",
        f"- Available backends: {_names(sorted(_spec.AVAILABLE_BACKENDS))}. {_names(later)} "
        f"{'is' if len(later) == 1 else 'are'} accepted by the schema but refused as not available yet.",
        "- The `count` values add up to `spec.members`. At most one entry may leave `count` out; it takes the rest, "
        "which must be at least 1.",
        "- An entry carries only the options object of its own backend; that object is created with its defaults "
        "when left out.",
        "- Container entries using the same `network` on the same `host` must give the same `subnet`, and a `subnet` "
        "must be a valid IPv4 network.",
        "",
        "### Replication",
        "",
        f"- `spec.replication.mode: sync` requires topology {sync}.",
        "- `spec.replication.syncCount` is at most `spec.members` - 1.",
        "",
        "### Databases and users",
        "",
        "- Database names are unique in `spec.databases`; user names are unique in `spec.users`.",
        "- `spec.databases[].owner` names a user in `spec.users`.",
        "- `spec.users[].grants[].database` names a database in `spec.databases`; a user has at most one grant "
        "per database.",
        f"- Reserved database names: {_names(sorted(_spec.RESERVED_DATABASE_NAMES))}.",
        f"- Reserved user names: {_names(sorted(_spec.RESERVED_USER_NAMES))}.",
        f"- Database and user names starting with `{_spec.RESERVED_PREFIX}` are reserved as well.",
        "",
        "### Other values",
        "",
        f"- `apiVersion` must be one of {_names(_spec.SUPPORTED_API_VERSIONS)}; other versions are refused before "
        "anything else is checked.",
        "- `spec.storage.size` and `spec.placement[].container.memory` must be greater than zero.",
        "- Each `spec.endpoint.allowedCidrs` entry must be a valid IPv4 or IPv6 network.",
        "- `spec.backup.repository.bucket` is required for repository type `s3`.",
        "- Integer fields take whole numbers only: `3.0` is refused.",
        "- Patterns match the whole value; a trailing newline is refused.",
        "- Values must be plain YAML/JSON: unquoted dates and timestamps, infinite numbers and non-string keys "
        'are refused. Quote `spec.version` (`"15"`, not `15`).',
        f"- Unknown fields are refused with the list of allowed ones. {hints}",
        f"- Nesting deeper than {_spec.MAX_DEPTH} levels is refused.",
    ]


# --- document -------------------------------------------------------------------------------------


def example_section() -> list[str]:
    text = EXAMPLE.read_text(encoding="utf-8")
    cluster, errors = _spec.validate_cluster(yaml.safe_load(text), _spec.load_schema(str(SCHEMA_PATH)))
    if errors:
        raise SystemExit(f"{EXAMPLE.relative_to(ROOT)} is not valid:\n" + "\n".join(errors))
    normalized = yaml.safe_dump(cluster, sort_keys=False, default_flow_style=False, width=120)
    return [
        "",
        "## Example",
        "",
        f"`{EXAMPLE.relative_to(ROOT)}`:",
        "",
        "```yaml",
        text.rstrip("\n"),
        "```",
        "",
        "The same document as the module returns it, with every default filled in:",
        "",
        "```yaml",
        normalized.rstrip("\n"),
        "```",
    ]


def render() -> str:
    schema = _spec.load_schema(str(SCHEMA_PATH))
    lines = [
        "<!-- Generated by tools/gen_spec_reference.py from the cluster schema and the cluster_spec rules; "
        "do not edit. -->",
        "",
        "# Cluster document reference",
        "",
        f"A cluster is described by one YAML (or JSON) document with `apiVersion: {_spec.API_VERSION}` and "
        "`kind: Cluster`. The `trove.dbaas.cluster_spec` module validates it against the JSON Schema "
        f"`{SCHEMA_PATH.relative_to(COLLECTION)}` and the [rules below]({RULES_ANCHOR}), reports every problem "
        "it finds, and returns the document with every default filled in.",
        "",
        "- Unknown fields are refused, at every level.",
        "- Passwords are never part of the document. They are generated and kept in the controller's secrets "
        "directory (`$TROVE_HOME/secrets`, by default `~/.local/share/trove-dbaas/secrets`).",
        "- In paths, `[]` stands for every entry of a list: `spec.placement[].container.cpus` is `cpus` in the "
        "`container` object of each `spec.placement` entry.",
        "- Defaults are filled in only when a field is left out.",
        "",
        "## Fields",
    ]
    lines += object_tables(schema)
    lines += rules(schema)
    lines += example_section()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, output: Path = OUTPUT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date instead of writing")
    args = parser.parse_args(argv)
    text = render()
    target = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(f"{target} {state}; run: python tools/gen_spec_reference.py", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
