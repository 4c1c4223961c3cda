"""Filters for Redis Cluster (topology sharded): redis_cluster_nodes, redis_join_plan, redis_retire_plan,
redis_cluster_status, redis_failover_plan."""

from __future__ import annotations

from typing import Any

from ansible_collections.trove.dbaas.plugins.module_utils import _redis_cluster


def redis_retire_plan(view: list[dict[str, Any]], retiring: list[str], members: list[str]) -> dict[str, Any]:
    plan = _redis_cluster.retire_plan(list(view), list(retiring), list(members))
    plan["forget"] = _redis_cluster.forget_plan(list(view), list(members) + list(retiring))
    return plan


def redis_cluster_status(
    members: list[dict[str, Any]], replicas: int, views: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    return _redis_cluster.status(list(members), int(replicas), dict(views))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "redis_cluster_nodes": _redis_cluster.parse_nodes,
            "redis_join_plan": _redis_cluster.join_plan,
            "redis_retire_plan": redis_retire_plan,
            "redis_cluster_status": redis_cluster_status,
            "redis_failover_plan": _redis_cluster.failover_plan,
        }
