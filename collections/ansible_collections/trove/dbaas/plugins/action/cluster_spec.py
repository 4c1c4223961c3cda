"""Validate and normalize a trove.dbaas cluster document on the controller."""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.trove.dbaas.plugins.module_utils._spec import load_schema, validate_cluster

# The schema ships inside the collection, two levels above plugins/action/.
SCHEMA_PATH = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "cluster-v1.json")
)

ARGUMENT_SPEC: dict[str, Any] = {
    # raw: a list or string must reach validate_cluster, which explains what is wrong with it.
    "definition": {"type": "raw"},
    "src": {"type": "str"},
}


def check_definition(document: Any, schema_path: str = SCHEMA_PATH) -> dict[str, Any]:
    """Task result for one document: the normalized cluster, or every problem found."""
    try:
        schema = load_schema(schema_path)
    except Exception as exc:
        return _failed([f"(schema): cannot use {schema_path}: {to_text(exc)}"])
    cluster, errors = validate_cluster(document, schema)
    if errors:
        return _failed(errors)
    return {"changed": False, "cluster": cluster}


def _failed(errors: list[str]) -> dict[str, Any]:
    # Ansible's own messages (file search, YAML parsing) span lines; msg keeps one problem per line.
    errors = [" ".join(error.split()) for error in errors]
    return {"changed": False, "failed": True, "msg": "\n".join(errors), "errors": errors}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        try:
            result.update(self._check())
        except Exception as exc:
            result.update(_failed([f"(internal): {type(exc).__name__}: {to_text(exc)}"]))
        return result

    def _check(self) -> dict[str, Any]:
        try:
            _validation, args = self.validate_argument_spec(
                argument_spec=ARGUMENT_SPEC,
                mutually_exclusive=[("definition", "src")],
                required_one_of=[("definition", "src")],
            )
        except AnsibleError as exc:
            return _failed([f"(arguments): {to_text(exc.message)}"])
        if args.get("src") is None:
            return check_definition(args["definition"])
        src = args["src"]
        if not os.path.isabs(src) and os.path.isfile(src):
            src = os.path.abspath(src)  # relative to the working directory, like -e @file
        try:
            document = self._loader.load_from_file(self._find_needle("files", src), cache="none")
        except AnsibleError as exc:
            return _failed([f"(src): {to_text(exc.message)}"])
        return check_definition(document)
