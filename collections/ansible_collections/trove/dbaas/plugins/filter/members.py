"""Filters for member planning: trove.dbaas.podman_members, nova_members, security_group_rule, free_addresses,
plan_members."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.trove.dbaas.plugins.module_utils import _members


def free_addresses(subnet: str, used: list[str], count: int, seed: str = "") -> list[str]:
    try:
        return _members.free_addresses(subnet, used, int(count), str(seed))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "podman_members": _members.podman_members,
            "nova_members": _members.nova_members,
            "security_group_rule": _members.security_group_rule,
            "free_addresses": free_addresses,
            "plan_members": _members.plan_members,
        }
