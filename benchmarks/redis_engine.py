"""Redis figures on real members, printed as JSON.

- topology sentinel (3 members): apply time from built images, and of a no-change re-apply; then,
  under a client that writes one key every 10 ms through a Sentinel-aware connection (redis-py
  Sentinel over TLS, as the spec user `app`): switchover.yml, a rolling restart (apply with a changed
  parameter), and an automatic failover after the primary's member is killed (`podman kill`, no
  playbook): the longest gap between two acknowledged writes, and how many acknowledged writes are
  missing afterwards;
- topology sharded (3 shards of a primary and a replica): the same apply times, and a shard's
  switchover under a cluster-aware client (redis.cluster.RedisCluster).

Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import postgresql
import redis
import yaml
from postgresql import ROOT, Bench, around
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

PORT, SENTINEL_PORT = 6379, 26379


class RedisBench(Bench):
    def __init__(self, work: Path, example: str, name: str):
        super().__init__(work, "async")
        document = yaml.safe_load((ROOT / "examples" / example).read_text())
        document["metadata"]["name"] = self.name = name
        self.document = document
        self.spec = work / f"{name}.yml"
        self.spec.write_text(yaml.safe_dump(document))

    def password(self, user: str) -> str:
        return yaml.safe_load((self.home / "secrets" / self.name / "credentials" / f"{user}.yml").read_text())[user]

    @property
    def tls(self) -> dict:
        return {"ssl": True, "ssl_ca_certs": str(self.home / "secrets" / self.name / "tls/ca.crt")}

    def client(self):
        """A client that finds the primary (Sentinel) or each key's primary (cluster) by itself."""
        login = {"username": "app", "password": self.password("app"), "socket_timeout": 1, "socket_connect_timeout": 1}
        members = [a for n, a in sorted(self.addresses().items()) if not n.endswith("-repo")]
        if self.document["spec"]["topology"] == "sharded":
            return RedisCluster(host=members[0], port=PORT, **self.tls, **login)
        sentinel = Sentinel(
            [(a, SENTINEL_PORT) for a in members], sentinel_kwargs={**self.tls, "socket_timeout": 1}, **self.tls
        )
        return sentinel.master_for(self.name, **login)

    def primary(self) -> str:
        by_address = {a: n for n, a in self.addresses().items()}
        host = self.client().connection_pool.get_master_address()[0]
        return by_address[host]

    def apply_times(self) -> dict:
        self.playbook("cluster_delete", "-e", f"confirm={self.name}", "-e", "purge=true")
        return {"apply_from_images_s": self.playbook("cluster_apply"), "noop_apply_s": self.playbook("cluster_apply")}

    def delete(self) -> None:
        self.playbook("cluster_delete", "-e", f"confirm={self.name}", "-e", "purge=true")


class Writer(postgresql.Writer):
    """SET app:tick:<n> every 10 ms; a failed write is retried with the next number."""

    def __init__(self, bench: RedisBench, first_id: int):
        super().__init__(bench, first_id)
        self.client = bench.client()
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.client.set(f"app:tick:{self.next_id}", self.next_id)
                self.acked.append((self.next_id, time.monotonic()))
                self.next_id += 1
            except (redis.RedisError, OSError) as error:
                self.errors[type(error).__name__] = self.errors.get(type(error).__name__, 0) + 1
            time.sleep(0.01)

    def result(self) -> dict:
        ids, gap = self.stop()
        keys = [f"app:tick:{i}" for i in ids]
        reader = self.bench.client()
        if isinstance(reader, RedisCluster):  # keys of many slots: one GET each
            values = [reader.get(key) for key in keys]
        else:
            values = [value for start in range(0, len(keys), 500) for value in reader.mget(keys[start : start + 500])]
        return {
            "acknowledged_writes": len(ids),
            "lost_writes": sum(value != str(i).encode() for i, value in zip(ids, values, strict=True)),
            "longest_write_gap_s": round(gap, 3),
            "errors": self.errors,
        }


def sentinel_figures(work: Path) -> dict:
    bench = RedisBench(work, "redis-sentinel.yml", "bench-redis")
    result = {"members": 3, **bench.apply_times()}
    result["switchover"] = around(bench, 1, lambda: bench.playbook("switchover"), Writer)

    def rolling_restart() -> float:
        bench.document["spec"]["parameters"]["maxmemory"] = "200mb"
        bench.spec.write_text(yaml.safe_dump(bench.document))
        return bench.playbook("cluster_apply")

    result["rolling_restart"] = around(bench, 1_000_000, rolling_restart, Writer)

    def kill_primary() -> float:
        started = time.monotonic()
        subprocess.run(["podman", "kill", bench.primary()], check=True, capture_output=True)
        time.sleep(20)  # Sentinel: down-after 5 s, the vote, the promotion; no playbook runs
        return round(time.monotonic() - started, 1)

    result["failover_primary_killed"] = around(bench, 2_000_000, kill_primary, Writer)
    del result["failover_primary_killed"]["playbook_s"]
    bench.delete()
    return result


def sharded_figures(work: Path) -> dict:
    bench = RedisBench(work, "redis-sharded.yml", "bench-redis-s")
    result = {"members": 6, "shards": 3, **bench.apply_times()}
    result["shard_switchover"] = around(bench, 1, lambda: bench.playbook("switchover", "-e", "target=1"), Writer)
    bench.delete()
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {"sentinel": sentinel_figures(Path(tmp)), "sharded": sharded_figures(Path(tmp))}
    load = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps({"engine": "redis", **figures, "load_average_after": load}, indent=2))


if __name__ == "__main__":
    main()
