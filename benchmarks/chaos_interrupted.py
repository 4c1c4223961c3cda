"""Playbooks killed part-way (SIGKILL, as when the controller dies) and run again, as JSON.

A PostgreSQL replicated cluster (3 members, backups on) under a client that commits one row every
10 ms through the multi-host DSN. For each operation the playbook is started, killed with its whole
process group after its Nth `TASK [` line (N drawn from a seeded generator: CHAOS_SEED reproduces a
run), then the same command runs again:

- cluster_apply: scale 3 -> 4, then back 4 -> 3 (a member retires) on the next round;
- switchover to a replica drawn at random, re-run with the same target;
- restore: the cluster's backups into a new cluster (chaos-int-r), checked against a marker table
  written before the backup and every commit acknowledged before it. A re-run refused because the
  interrupted attempt left data is run once more with `-e confirm=<new cluster>`, as
  docs/operations/restore.md says, and reported as `refused_without_confirm`.

Invariants after the re-run: it succeeds, cluster_health passes, exactly one member is writable, no
acknowledged commit is lost, and the restored cluster holds the marker and the earlier commits. The
run exits non-zero when one breaks. CHAOS_ROUNDS (2 by default) repeats each operation with other
kill points. Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import yaml
from postgresql import BIN, ROOT, Bench, Writer

NAME = "chaos-int"
MARKER_ROWS = 1000


class Cluster(Bench):
    """The example replicated cluster renamed, with backups on or off."""

    def __init__(self, work: Path, name: str, backup: bool):
        super().__init__(work, "async")
        self.document = yaml.safe_load(self.spec.read_text())
        self.document["metadata"]["name"] = self.name = name
        self.document["spec"]["backup"] = {"enabled": backup}
        self.spec = work / f"{name}.yml"
        self.write()

    def write(self) -> None:
        self.spec.write_text(yaml.safe_dump(self.document))

    def run(self, playbook: str, *extra: str, kill_after: int = 0) -> dict:
        """The playbook, SIGKILLed with its process group at its kill_after-th task (0: never)."""
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(BIN / "ansible-playbook"), f"playbooks/{playbook}.yml", "-e", f"cluster_file={self.spec}", *extra],
            cwd=ROOT,
            env={**self.env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        tasks, task, tail = 0, "", []
        for line in proc.stdout:
            tail = [*tail[-60:], line]
            if line.startswith("TASK ["):
                tasks, task = tasks + 1, line.strip(" *\n")
                if tasks == kill_after:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
        proc.wait()
        result = {"ok": proc.returncode == 0, "tasks": tasks, "seconds": round(time.monotonic() - started, 1)}
        if kill_after:
            result |= {"killed": proc.returncode == -signal.SIGKILL, "killed_in": task}
        elif proc.returncode:
            result["output_tail"] = "".join(tail)[-3000:]
        return result

    def must(self, playbook: str, *extra: str) -> dict:
        result = self.run(playbook, *extra)
        if not result["ok"]:
            sys.exit(f"{playbook} failed on {self.name}:\n{result['output_tail']}")
        return result

    def sql(self, statement: str, *args) -> list:
        with self.connect(",".join(self.addresses().values())) as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []

    def writable(self) -> list[str]:
        return sorted(n for n, a in self.addresses().items() if self._is_primary(a))


def interrupted(cluster: Cluster, rng: random.Random, span: int, playbook: str, *extra: str) -> dict:
    """Kill the playbook at a random task in 1..span, run it again, then judge the cluster."""
    kill_after = rng.randint(1, span)
    first = cluster.run(playbook, *extra, kill_after=kill_after)
    rerun = cluster.run(playbook, *extra)
    if not rerun["ok"] and "confirm: cluster" in rerun["output_tail"]:
        # docs/operations/restore.md: data from the interrupted attempt is replaced on confirmation.
        rerun = {"refused_without_confirm": True, **cluster.run(playbook, *extra, "-e", f"confirm={cluster.name}")}
    health = cluster.run("cluster_health")
    print(playbook, json.dumps({"kill_after_task": kill_after, "interrupted": first, "rerun": rerun}), file=sys.stderr)
    return {
        "kill_after_task": kill_after,
        "interrupted": first,
        "rerun": rerun,
        "health_ok": health["ok"],
        **({"health_output_tail": health["output_tail"]} if not health["ok"] else {}),
        "writable_members": cluster.writable() if rerun["ok"] else [],
    }


def under_writes(cluster: Cluster, first_id: int, action) -> dict:
    writer = Writer(cluster, first_id)
    writer.start()
    time.sleep(2)
    result = action()
    time.sleep(2)
    return {**result, **writer.result()}


def restore_round(source: Cluster, target: Cluster, rng: random.Random, span: int, before: list[int]) -> dict:
    """Restore source's backups into a new target, interrupted then run again; checks the data."""
    target.must("cluster_delete", "-e", f"confirm={target.name}", "-e", "purge=true")
    result = interrupted(target, rng, span, "restore", "-e", f"source={source.name}")
    if result["rerun"]["ok"]:
        result["marker_rows"] = target.sql("SELECT count(*) FROM marker")[0][0]
        present = {r[0] for r in target.sql("SELECT id FROM ticks WHERE id = ANY(%s)", before)}
        result["commits_before_backup_missing"] = len(set(before) - present)
    target.must("cluster_delete", "-e", f"confirm={target.name}", "-e", "purge=true")
    return result


def broken(result: dict) -> list[str]:
    problems = []
    if not result["rerun"]["ok"]:
        problems.append("the re-run failed")
    if not result["health_ok"]:
        problems.append("cluster_health failed")
    if result["rerun"]["ok"] and len(result["writable_members"]) != 1:
        problems.append(f"writable members: {result['writable_members']}")
    if result.get("lost_commits"):
        problems.append(f"{result['lost_commits']} acknowledged commits lost")
    if result.get("marker_rows", MARKER_ROWS) != MARKER_ROWS:
        problems.append(f"restored marker rows: {result['marker_rows']}")
    if result.get("commits_before_backup_missing"):
        problems.append(f"{result['commits_before_backup_missing']} commits before the backup not restored")
    return problems


def main() -> None:
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 2**31))
    rounds = int(os.environ.get("CHAOS_ROUNDS", "2"))
    rng = random.Random(seed)
    results: dict[str, list] = {"cluster_apply": [], "switchover": [], "restore": []}
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Cluster(Path(tmp), NAME, True), Cluster(Path(tmp), f"{NAME}-r", False)
        source.must("cluster_delete", "-e", f"confirm={source.name}", "-e", "purge=true")
        span = source.must("cluster_apply")["tasks"]
        source.sql("CREATE TABLE ticks (id bigint PRIMARY KEY)")
        source.sql("CREATE TABLE marker AS SELECT generate_series(1, %s) AS n", MARKER_ROWS)
        under_writes(source, 1, dict)  # commits that the full backup below must hold
        before_ids = [r[0] for r in source.sql("SELECT id FROM ticks")]
        source.must("backup", "-e", "type=full")
        switchover_span = source.must("switchover")["tasks"]
        for n in range(rounds):
            source.document["spec"]["members"] = 4 if n % 2 == 0 else 3
            source.write()
            first_id = (n + 1) * 10_000_000
            apply = under_writes(source, first_id, lambda: interrupted(source, rng, span, "cluster_apply"))
            results["cluster_apply"].append({"members": source.document["spec"]["members"], **apply})
            # docs/operations/switchover.md: a re-run names the same target, or it moves the primary again.
            replica = rng.choice(sorted(set(source.addresses()) - {*source.writable(), f"{NAME}-repo"}))
            switchover = partial(interrupted, source, rng, switchover_span, "switchover", "-e", f"target={replica}")
            results["switchover"].append({"target": replica, **under_writes(source, first_id + 1_000_000, switchover)})
            results["restore"].append(restore_round(source, target, rng, span, before_ids))
        source.must("cluster_delete", "-e", f"confirm={source.name}", "-e", "purge=true")
    header = {"engine": "postgresql", "topology": "replicated", "seed": seed, "rounds": rounds}
    header |= {"commits_before_backup": len(before_ids), "apply_tasks": span, "switchover_tasks": switchover_span}
    print(json.dumps({**header, **results}, indent=2))
    problems = {f"{op}[{n}]": p for op, runs in results.items() for n, r in enumerate(runs) if (p := broken(r))}
    if problems:
        sys.exit(f"invariants broken: {problems}")


if __name__ == "__main__":
    main()
