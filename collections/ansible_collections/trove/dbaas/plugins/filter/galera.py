"""Filters for the mariadb role's Galera topology: galera_bootstrap_plan, galera_grastate, galera_recovered."""

from __future__ import annotations

from typing import Any

from ansible_collections.trove.dbaas.plugins.module_utils import _galera


def galera_bootstrap_plan(
    members: list[str], states: dict[str, dict[str, Any]], force: bool = False, prefer: str = ""
) -> dict[str, Any]:
    return _galera.bootstrap_plan(list(members), dict(states), bool(force), str(prefer or ""))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "galera_bootstrap_plan": galera_bootstrap_plan,
            "galera_grastate": _galera.parse_grastate,
            "galera_recovered": _galera.parse_recovered,
        }
