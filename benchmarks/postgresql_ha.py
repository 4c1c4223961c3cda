"""PostgreSQL topology ha (Patroni, etcd on the members) figures on real members, printed as JSON.

For async and sync replication, under a client that commits one small transaction every 10 ms
through the multi-host DSN:
- switchover through the playbook: the longest gap between two acknowledged commits, and how many
  acknowledged commits are missing afterwards;
- automatic failover after the leader's member is killed (`podman kill`, no playbook): the same
  figures, and how long until a new leader accepted writes.

Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from postgresql import ROOT, Bench, Writer, apply_and_switch_over


class HaBench(Bench):
    def __init__(self, work: Path, mode: str, name: str = ""):
        super().__init__(work, mode)
        document = yaml.safe_load((ROOT / "examples/postgresql-ha.yml").read_text())
        document["metadata"]["name"] = self.name = name or f"ha-bench-{mode}"
        document["spec"]["replication"] = {"mode": mode, "syncCount": 1}
        self.spec = work / f"{self.name}.yml"
        self.spec.write_text(yaml.safe_dump(document))


def killed_leader(bench: HaBench, first_id: int) -> dict:
    writer = Writer(bench, first_id)
    writer.start()
    time.sleep(2)
    leader = bench.primary()
    killed = time.monotonic()
    subprocess.run(["podman", "kill", leader], check=True, capture_output=True)
    while not writer.acked or writer.acked[-1][1] < killed + 0.5:
        time.sleep(0.2)
    writes_again = round(writer.acked[-1][1] - killed, 1)
    time.sleep(2)
    return {**writer.result(), "writes_again_after_s": writes_again}


def run_mode(work: Path, mode: str) -> dict:
    bench = HaBench(work, mode)
    result = apply_and_switch_over(bench)
    result["automatic_failover_leader_killed"] = killed_leader(bench, 1_000_000)
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {mode: run_mode(Path(tmp), mode) for mode in ("async", "sync")}
    print(json.dumps({"engine": "postgresql", "topology": "ha", "members": 3, **figures}, indent=2))


if __name__ == "__main__":
    main()
