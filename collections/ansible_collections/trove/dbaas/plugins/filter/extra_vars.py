"""Filter trove.dbaas.extra_var_errors: check the extra vars an operation playbook reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Member, cluster and user names: what the spec allows for them, never a path or a command.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
_BOOLEANS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
_SHOWN = 40
KINDS = ("bool", "name", "names", "text")


def _show(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


# Checked in order (bool before int); Ansible passes subclasses such as _AnsibleTaggedStr.
_TYPE_NAMES = (
    (Mapping, "a mapping"),
    ((list, tuple), "a list"),
    (str, "a string"),
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
)


def _type(value: Any) -> str:
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def _plain(value: Any) -> Any:
    # repr of Ansible's tagged values is the plain one's, but be sure for the few types shown here
    for kind in (str, bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _problem(value: Any, kind: Any) -> str | None:
    if isinstance(kind, (list, tuple)):  # one of these words
        fits = isinstance(value, str) and value in kind
        return None if fits else f"{_show(value)} is not allowed; allowed: {', '.join(kind)}"
    if kind == "bool":
        fits = isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in _BOOLEANS)
        return None if fits else f"expected true or false, got {_type(value)} {_show(value)}"
    if kind == "text":
        fits = isinstance(value, str) and bool(value.strip()) and "\n" not in value
        return None if fits else f"expected one line of text, got {_type(value)} {_show(value)}"
    names = value.split(",") if kind == "names" and isinstance(value, str) else value
    if kind == "names" and isinstance(names, (list, tuple)) and names:
        bad = [name for name in names if not (isinstance(name, str) and _NAME.match(name.strip()))]
        return f"{', '.join(_show(name) for name in bad)} is not a name" if bad else None
    if isinstance(value, str) and _NAME.match(value):
        return None
    what = "a name" if kind == "name" else "names separated by commas"
    return f"expected {what} (letters, digits, _ . -), got {_type(value)} {_show(value)}"


def extra_var_errors(given: Mapping[str, Any], kinds: Mapping[str, Any]) -> list[str]:
    """One `<variable>: <what is wrong>` message per extra var of `given` that does not fit its kind.

    `given` maps variable names to values, None or a blank string meaning not given; `kinds` maps names to bool, name,
    names (a list or comma-separated string), text, or a list of allowed words.
    """
    if not isinstance(given, Mapping) or not isinstance(kinds, Mapping):
        raise AnsibleFilterError("extra_var_errors expects two mappings")
    errors = []
    for name in sorted(kinds):
        kind = kinds[name]
        if not isinstance(kind, (list, tuple)) and kind not in KINDS:
            raise AnsibleFilterError(f"extra_var_errors: unknown kind {kind!r} for {name}")
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # not given (AWX may send an optional survey answer as an empty string)
        problem = _problem(value, kind)
        if problem:
            errors.append(f"{name}: {problem}")
    return errors


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"extra_var_errors": extra_var_errors}
