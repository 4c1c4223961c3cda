"""Faults injected into a Redis sharded cluster (the example: 3 shards of a primary and a replica,
persistence `rdb`, cluster-node-timeout 5 s), as JSON.

A cluster-aware client (redis.cluster.RedisCluster over TLS, as the spec user `app`) writes
app:tick:<n> every 10 ms, retrying a failed key until it is written: the keys spread over every
slot, so writes stop as soon as the next key falls into a shard that does not answer, and resume
when that shard's slots have a primary again.

- server_killed: `kill -9` of the redis-server of the primary serving app:tick:0 (systemd starts it
  again; Redis Cluster promotes its replica only if it stays away longer than cluster-node-timeout);
- member_killed: that primary's whole member killed (`podman kill`): its replica is promoted by
  Redis Cluster itself (no playbook), then the member is started again and rejoins as a replica.

Redis replicates asynchronously: the figures report the acknowledged writes missing afterwards, not
require none. After each scenario every member must report cluster_state ok with all 16384 slots
covered, and after `cluster_apply` each of the 3 primaries must have its replica again.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from chaos import killed_in_member, member_killed, run
from chaos_redis_sentinel import cli
from redis_engine import RedisBench, Writer

SHARD_KEY = "app:tick:0"


class ShardedBench(RedisBench):
    def primary(self) -> str:
        """The primary serving SHARD_KEY's slot: the shard the faults hit."""
        by_address = {a: n for n, a in self.addresses().items()}
        return by_address[self.client().get_node_from_key(SHARD_KEY).host]


def cluster_info(bench: ShardedBench, member: str) -> dict[str, str]:
    text = cli(bench, member, "CLUSTER", "INFO", user="admin")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def slots_covered(bench: ShardedBench) -> dict:
    """cluster_state and covered slots as every member that answers sees them."""
    seen = {}
    for member in sorted(bench.addresses()):
        try:
            seen[member] = cluster_info(bench, member)
        except subprocess.SubprocessError:  # a member still starting
            continue
    return {
        "cluster_state_ok_on": sum(i["cluster_state"] == "ok" for i in seen.values()),
        "slots_covered_min": min((int(i["cluster_slots_ok"]) for i in seen.values()), default=0),
    }


def server_killed(bench: ShardedBench, primary: str, writer: Writer) -> dict:
    return {**killed_in_member(writer, primary, "pkill", "-9", "-x", "redis-server"), **slots_covered(bench)}


def shard_member_killed(bench: ShardedBench, primary: str, writer: Writer) -> dict:
    return {**member_killed(bench, primary, writer), **slots_covered(bench)}


def three_pairs(bench: ShardedBench):
    """Every member sees cluster_state ok and 16384 slots; 3 primaries each with a connected replica."""

    def healthy(primary: str) -> bool:
        if slots_covered(bench) != {"cluster_state_ok_on": 6, "slots_covered_min": 16384}:
            return False
        nodes = cli(bench, primary, "CLUSTER", "NODES", user="admin").splitlines()
        connected = [line.split() for line in nodes if " connected" in line and "fail" not in line.split()[2]]
        return sum("master" in n[2] for n in connected) == 3 and sum("slave" in n[2] for n in connected) == 3

    return healthy


def broken(result: dict) -> list[str]:
    problems = []
    if result["slots_covered_min"] != 16384:
        problems.append(f"only {result['slots_covered_min']} slots covered after the fault")
    if not result["converged_after_apply"]:
        problems.append("not 3 primaries with a replica each after cluster_apply")
    return problems


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = ShardedBench(Path(tmp), "redis-sharded.yml", "chaos-redis-shards")
        scenarios = {"server_killed": server_killed, "member_killed": shard_member_killed}
        header = {"engine": "redis", "topology": "sharded", "shards": 3}
        run(bench, header, scenarios, writer_class=Writer, healthy=three_pairs(bench), broken=broken)


if __name__ == "__main__":
    main()
