"""Every role's meta/argument_specs.yml agrees with its defaults and its tasks.

ansible-core validates the entry point's spec when a role is included (tasks_from picks the entry
point) and templates the values of the listed options, so an entry point must list exactly the
options its tasks read: an unused option whose default references a variable the caller does not
have fails the include. The usage check follows static include_tasks/import_tasks, the handlers and
templates the tasks name, and the defaults/vars that a used default references.

A templated default of a dict, list of dicts, int or bool is left out of the spec (antsibull-docs
cannot document it) and the description says "Defaults to ...".

Rules: tasks files starting with `_` are private; every other tasks file is an entry point.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())

TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "raw": (object,),
}
INCLUDE_ACTIONS = {
    f"{prefix}{action}" for prefix in ("", "ansible.builtin.") for action in ("include_tasks", "import_tasks")
}
UNTEMPLATABLE = {"dict", "int", "bool", "float"}
GALAXY_KEYS = {"author", "description", "license", "min_ansible_version", "platforms", "galaxy_tags"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _defaults(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return (_load(path) or {}) if path.is_file() else {}


def _role_vars(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "vars" / "main.yml"
    return (_load(path) or {}) if path.is_file() else {}


def _specs(role: str) -> dict[str, Any]:
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"{role}: meta/argument_specs.yml is missing"
    data = _load(path) or {}
    assert isinstance(data.get("argument_specs"), dict), f"{role}: no argument_specs mapping"
    return data["argument_specs"]


def _task_file(role: str, name: str) -> Path | None:
    for ext in ("yml", "yaml"):
        path = ROLES_DIR / role / "tasks" / f"{name}.{ext}"
        if path.is_file():
            return path
    return None


def _public_task_files(role: str) -> set[str]:
    tasks = ROLES_DIR / role / "tasks"
    return {p.stem for p in tasks.iterdir() if p.suffix in (".yml", ".yaml") and not p.name.startswith("_")}


def _options(options: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every option and sub-option as (dotted name, spec)."""
    for name, spec in (options or {}).items():
        yield prefix + name, spec
        if isinstance(spec, dict) and spec.get("options"):
            yield from _options(spec["options"], f"{prefix}{name}.")


def _is_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _default_left_out(option: dict[str, Any], default: Any) -> bool:
    """A templated default of a type a template cannot document (antsibull-docs rejects the string
    as a dict, list of dicts, int or bool) is left out of the spec and named in the description."""
    untyped = option.get("type") in UNTEMPLATABLE or (option.get("type") == "list" and option.get("elements") == "dict")
    described = any("Defaults to" in line for line in option.get("description") or [])
    return _is_templated(default) and untyped and described


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _includes(node: Any) -> Iterator[str]:
    """File names of include_tasks/import_tasks anywhere in a tasks file (blocks included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in INCLUDE_ACTIONS:
                yield value.get("file", "") if isinstance(value, dict) else value
            else:
                yield from _includes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _includes(item)


def _values_of(node: Any, wanted: str) -> Iterator[Any]:
    """Every value of key `wanted` anywhere in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == wanted:
                yield value
            yield from _values_of(value, wanted)
    elif isinstance(node, list):
        for item in node:
            yield from _values_of(item, wanted)


def _notified_handlers(role: str, tasks: list[Any]) -> list[str]:
    """Strings of the handlers in handlers/main.yml that the given tasks notify (by name or listen)."""
    path = ROLES_DIR / role / "handlers" / "main.yml"
    if not path.is_file():
        return []
    notified = {name for task in tasks for value in _values_of(task, "notify") for name in _strings(value)}
    texts = []
    for handler in _load(path) or []:
        topics = set(_strings(handler.get("name"))) | set(_strings(handler.get("listen")))
        if topics & notified:
            texts.extend(_strings(handler))
    return texts


def _used_names(role: str, entry_point: str) -> tuple[set[str], list[str]]:
    """Role defaults an entry point reads, and the includes too dynamic to follow."""
    tasks_dir = ROLES_DIR / role / "tasks"
    start = _task_file(role, entry_point)
    assert start is not None
    texts: list[str] = []
    tasks: list[Any] = []
    dynamic: list[str] = []
    seen: set[Path] = set()
    pending = [start]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        data = _load(path)
        tasks.append(data)
        texts.extend(_strings(data))
        for name in _includes(data):
            if not isinstance(name, str) or _is_templated(name) or not (tasks_dir / name).is_file():
                dynamic.append(f"{path.name}: {name!r}")
            else:
                pending.append(tasks_dir / name)
    texts.extend(_notified_handlers(role, tasks))
    templates_dir = ROLES_DIR / role / "templates"
    if templates_dir.is_dir():
        named = [t for t in templates_dir.rglob("*") if t.is_file()]
        for template in named:
            if any(template.name in text or template.name.removesuffix(".j2") in text for text in texts):
                texts.append(template.read_text(encoding="utf-8"))
    defaults, role_vars = _defaults(role), _role_vars(role)
    known = {**role_vars, **defaults}
    used: set[str] = set()
    queue = [name for text in texts for name in _NAME.findall(text) if name in known]
    while queue:
        name = queue.pop()
        if name in used:
            continue
        used.add(name)
        queue.extend(n for text in _strings(known[name]) for n in _NAME.findall(text) if n in known)
    return used & set(defaults), dynamic


def _entry_points() -> list[tuple[str, str]]:
    pairs = []
    for role in ROLES:
        try:
            pairs.extend((role, entry_point) for entry_point in _specs(role))
        except AssertionError:
            continue  # reported by test_role_has_meta
    return pairs


@pytest.mark.parametrize("role", ROLES)
def test_role_has_meta(role: str) -> None:
    meta = _load(ROLES_DIR / role / "meta" / "main.yml")
    missing = GALAXY_KEYS - set(meta.get("galaxy_info") or {})
    assert not missing, f"{role}: meta/main.yml galaxy_info lacks {sorted(missing)}"
    assert meta.get("dependencies") == [], f"{role}: meta/main.yml must declare dependencies: []"
    assert _specs(role)


@pytest.mark.parametrize("role", ROLES)
def test_role_has_readme(role: str) -> None:
    """galaxy-importer fails the whole import when a role has no README.md."""
    readme = ROLES_DIR / role / "README.md"
    assert readme.is_file(), f"{role}: no README.md"
    text = readme.read_text(encoding="utf-8")
    missing = [name for name in _specs(role) if f"- `{name}`: " not in text]
    assert not missing, f"{role}: README.md does not list the entry points {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_entry_points_have_tasks_files(role: str) -> None:
    missing = [name for name in _specs(role) if _task_file(role, name) is None]
    assert not missing, f"{role}: entry points without tasks/<name>.yml: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_public_tasks_files_are_entry_points(role: str) -> None:
    entry_points = set(_specs(role))
    orphans = sorted(_public_task_files(role) - entry_points)
    assert not orphans, f"{role}: tasks files {orphans} are public but not entry points: rename them _<name>.yml"


@pytest.mark.parametrize(("role", "entry_point"), _entry_points())
def test_entry_point_is_documented(role: str, entry_point: str) -> None:
    spec = _specs(role)[entry_point]
    assert spec.get("short_description"), f"{role}/{entry_point}: no short_description"
    assert spec.get("description"), f"{role}/{entry_point}: no description"
    problems = []
    for name, option in _options(spec.get("options")):
        description = option.get("description")
        if not description or not all(isinstance(line, str) and line.strip() for line in _strings(description)):
            problems.append(f"{name}: no description")
        if option.get("type") not in TYPES:
            problems.append(f"{name}: type {option.get('type')!r} is not one of {sorted(TYPES)}")
        if option.get("type") == "list" and "elements" not in option:
            problems.append(f"{name}: a list needs elements")
        if any(_is_templated(text) for text in _strings(description)):
            problems.append(f"{name}: the description would be templated")
    assert not problems, f"{role}/{entry_point}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_an_entry_point(role: str) -> None:
    listed = {name for spec in _specs(role).values() for name in (spec.get("options") or {})}
    missing = sorted(set(_defaults(role)) - listed)
    assert not missing, f"{role}: defaults in no entry point: {missing}"


@pytest.mark.parametrize(("role", "entry_point"), _entry_points())
def test_options_match_defaults(role: str, entry_point: str) -> None:
    defaults = _defaults(role)
    problems = []
    for name, option in (_specs(role)[entry_point].get("options") or {}).items():
        if name not in defaults:
            if not option.get("required"):
                problems.append(f"{name}: not in defaults/main.yml and not required")
            continue
        if option.get("required"):
            problems.append(f"{name}: has a default, so it cannot be required")
        if "default" not in option:
            if not _default_left_out(option, defaults[name]):
                problems.append(f"{name}: no default; defaults/main.yml has {defaults[name]!r}")
        elif option["default"] != defaults[name]:
            problems.append(f"{name}: default {option['default']!r} differs from defaults/main.yml {defaults[name]!r}")
    assert not problems, f"{role}/{entry_point}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(("role", "entry_point"), _entry_points())
def test_literal_defaults_fit_their_type(role: str, entry_point: str) -> None:
    problems = []
    for name, option in _options(_specs(role)[entry_point].get("options")):
        if "default" not in option or _is_templated(option["default"]):
            continue
        default, expected = option["default"], TYPES.get(option.get("type"), (object,))
        if not isinstance(default, expected) or (isinstance(default, bool) and bool not in expected):
            problems.append(f"{name}: default {default!r} is not a {option.get('type')}")
        elements = TYPES.get(option.get("elements"), (object,))
        if isinstance(default, list) and not all(isinstance(item, elements) for item in default):
            problems.append(f"{name}: default {default!r} has elements that are not {option.get('elements')}")
        choices = option.get("choices")
        values = default if isinstance(default, list) else [default]
        if choices and any(value not in choices for value in values):
            problems.append(f"{name}: default {default!r} is not among choices {choices}")
    assert not problems, f"{role}/{entry_point}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(("role", "entry_point"), _entry_points())
def test_options_are_the_ones_the_tasks_use(role: str, entry_point: str) -> None:
    if _task_file(role, entry_point) is None:
        pytest.skip("no tasks file (reported by test_entry_points_have_tasks_files)")
    used, dynamic = _used_names(role, entry_point)
    if dynamic:
        pytest.skip(f"includes that cannot be followed statically: {dynamic}")
    listed = set(_specs(role)[entry_point].get("options") or {}) & set(_defaults(role))
    problems = [f"{name}: used but not listed" for name in sorted(used - listed)]
    problems += [
        f"{name}: listed but not used (its default is still templated on include)" for name in sorted(listed - used)
    ]
    assert not problems, f"{role}/{entry_point}:\n  " + "\n  ".join(problems)
