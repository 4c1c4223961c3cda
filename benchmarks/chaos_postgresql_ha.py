"""Faults injected into a PostgreSQL ha cluster (Patroni, synchronous replication), as JSON.

Each scenario runs under a client that commits one row every 10 ms through the multi-host DSN:

- database_killed: `kill -9` of the leader's postmaster (Patroni restarts it, or another member
  takes over);
- member_killed: the leader's whole member is killed (`podman kill`), then started again;
- leader_cut_off: the leader's member is disconnected from the network, then connected again.
  No split brain: the old leader must stop accepting writes before a new leader accepts any.

Each reports the longest gap between two acknowledged commits (the outage the client saw) and the
acknowledged commits missing afterwards; then `cluster_apply` runs and the cluster must have one
leader and two streaming replicas again. The run exits non-zero when an invariant breaks: a lost
acknowledged commit, two writable members, or a cluster that does not converge.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from postgresql import Writer
from postgresql_ha import HaBench

NETWORK = "trove"
DATA_DIR = "/srv/data/postgresql/15/main"


def member_sql(member: str, sql: str, timeout: float = 5) -> str:
    """SQL on a member through `podman exec` (local socket): works while it is cut off the network."""
    return subprocess.run(
        ["podman", "exec", member, "runuser", "-u", "postgres", "--", "psql", "-XAtc", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout.strip()


def converged(bench: HaBench) -> bool:
    """After cluster_apply: one leader, and two replicas streaming from it."""
    bench.playbook("cluster_apply")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            primary = bench.primary()
            if member_sql(primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "2":
                return True
        except (StopIteration, subprocess.SubprocessError):
            pass
        time.sleep(1)
    return False


def under_writes(bench: HaBench, first_id: int, fault) -> dict:
    """The fault's own figures, plus the client's, while the client writes."""
    writer = Writer(bench, first_id)
    writer.start()
    time.sleep(2)
    leader = bench.primary()
    figures = fault(leader, writer)
    time.sleep(2)
    after = wait_for_primary(bench)
    result = {**writer.result(), **figures, "leader_before": leader, "leader_after": after}
    result["converged_after_apply"] = converged(bench)
    return result


def writes_resumed(writer: Writer, since: float, timeout: float = 120) -> float:
    """Seconds from the fault to the end of the outage it caused: the first pause of more than
    0.5 s between acknowledged writes from then on (a reply in flight may still arrive just after
    the fault). 0 when the writes went on for 10 s without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = [since, *(t for _, t in writer.acked if t > since)]
        pause = next((b for a, b in itertools.pairwise(times) if b - a > 0.5), None)
        if pause is not None:
            return round(pause - since, 2)
        if times[-1] > since + 10:
            return 0.0
        time.sleep(0.1)
    return float("inf")


def wait_for_primary(bench, timeout: float = 120) -> str:
    """The member that takes writes, once there is one again (`bench.primary()` of either engine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bench.primary()
        except Exception:  # none writable yet; Sentinel names no primary yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def database_killed(bench: HaBench, leader: str, writer: Writer) -> dict:
    killed = time.monotonic()
    subprocess.run(
        ["podman", "exec", leader, "sh", "-c", f"kill -9 $(head -1 {DATA_DIR}/postmaster.pid)"],
        check=True,
        capture_output=True,
    )
    return {"writes_again_after_s": writes_resumed(writer, killed)}


def member_killed(bench: HaBench, leader: str, writer: Writer) -> dict:
    killed = time.monotonic()
    subprocess.run(["podman", "kill", leader], check=True, capture_output=True)
    again = writes_resumed(writer, killed)
    subprocess.run(["podman", "start", leader], check=True, capture_output=True)
    return {"writes_again_after_s": again}


def leader_cut_off(bench: HaBench, leader: str, writer: Writer) -> dict:
    address = bench.addresses()[leader]
    read_only_at: list[float] = []
    stop = threading.Event()

    def watch_old_leader() -> None:
        """When the isolated old leader stops accepting writes (in recovery, or not running)."""
        while not stop.is_set() and not read_only_at:
            try:
                if member_sql(leader, "SELECT pg_is_in_recovery()", timeout=3) == "t":
                    read_only_at.append(time.monotonic())
            except subprocess.SubprocessError:
                read_only_at.append(time.monotonic())
            time.sleep(0.2)

    cut = time.monotonic()
    subprocess.run(["podman", "network", "disconnect", NETWORK, leader], check=True, capture_output=True)
    watcher = threading.Thread(target=watch_old_leader, daemon=True)
    watcher.start()
    again = writes_resumed(writer, cut)
    watcher.join(60)
    stop.set()
    subprocess.run(["podman", "network", "connect", "--ip", address, NETWORK, leader], check=True, capture_output=True)
    old_read_only = round(read_only_at[0] - cut, 2) if read_only_at else float("inf")
    return {
        "writes_again_after_s": again,
        "old_leader_read_only_after_s": old_read_only,
        "split_brain": not old_read_only < again,
    }


SCENARIOS = {"database_killed": database_killed, "member_killed": member_killed, "leader_cut_off": leader_cut_off}


def broken(result: dict) -> list[str]:
    problems = []
    if result["lost_commits"]:
        problems.append(f"{result['lost_commits']} acknowledged commits lost")
    if result.get("split_brain"):
        problems.append("the cut-off leader accepted writes after a new leader did")
    if not result["converged_after_apply"]:
        problems.append("no leader with two streaming replicas after cluster_apply")
    return problems


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench = HaBench(Path(tmp), "sync", "chaos-pg-ha")
        bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
        bench.playbook("cluster_apply")
        with bench.connect(",".join(bench.addresses().values())) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
        results = {}
        for n, (name, fault) in enumerate(SCENARIOS.items()):
            results[name] = under_writes(bench, n * 1_000_000 + 1, lambda leader, w, f=fault: f(bench, leader, w))
        bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    problems = {name: p for name, result in results.items() if (p := broken(result))}
    print(json.dumps({"engine": "postgresql", "topology": "ha", "replication": "sync", **results}, indent=2))
    if problems:
        sys.exit(f"invariants broken: {problems}")


if __name__ == "__main__":
    main()
