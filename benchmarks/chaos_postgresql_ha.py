"""Faults injected into a PostgreSQL ha cluster (Patroni, synchronous replication), as JSON.

Each scenario runs under a client that commits one row every 10 ms through the multi-host DSN:

- database_killed: `kill -9` of the leader's postmaster (Patroni restarts it, or another member
  takes over);
- member_killed: the leader's whole member is killed (`podman kill`), then started again;
- leader_cut_off: the leader's member is disconnected from the network, then connected again.
  No split brain: the old leader must stop accepting writes before a new leader accepts any.

Each reports the longest gap between two acknowledged commits (the outage the client saw) and the
acknowledged commits missing afterwards; then `cluster_apply` runs and the cluster must have one
leader and two streaming replicas again. The run (`chaos.py`) exits non-zero when an invariant
breaks: a lost acknowledged commit, two writable members, or a cluster that does not converge.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from chaos import Poll, cut_off, in_member, killed_in_member, member_killed, run, writes_resumed
from postgresql import Writer
from postgresql_ha import HaBench

DATA_DIR = "/srv/data/postgresql/15/main"


def member_sql(member: str, sql: str, timeout: float = 5) -> str:
    return in_member(member, "runuser", "-u", "postgres", "--", "psql", "-XAtc", sql, timeout=timeout)


def database_killed(bench: HaBench, leader: str, writer: Writer) -> dict:
    return killed_in_member(writer, leader, "sh", "-c", f"kill -9 $(head -1 {DATA_DIR}/postmaster.pid)")


def leader_cut_off(bench: HaBench, leader: str, writer: Writer) -> dict:
    def read_only() -> bool:
        """The isolated old leader takes no writes: in recovery, or not running."""
        try:
            return member_sql(leader, "SELECT pg_is_in_recovery()", timeout=3) == "t"
        except subprocess.SubprocessError:
            return True

    with cut_off(bench, leader) as cut:
        watch = Poll(read_only)
        watch.start()
        again = writes_resumed(writer, cut)
        read_only_at = watch.stop()
    old_read_only = round(read_only_at[0] - cut, 2) if read_only_at else float("inf")
    return {
        "writes_again_after_s": again,
        "old_leader_read_only_after_s": old_read_only,
        "split_brain": not old_read_only < again,
    }


def streams_to_two(leader: str) -> bool:
    return member_sql(leader, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "2"


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

        def create_table() -> None:
            with bench.connect(",".join(bench.addresses().values())) as conn, conn.cursor() as cur:
                cur.execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")

        scenarios = {
            "database_killed": database_killed,
            "member_killed": member_killed,
            "leader_cut_off": leader_cut_off,
        }
        header = {"engine": "postgresql", "topology": "ha", "replication": "sync"}
        run(bench, header, scenarios, writer_class=Writer, healthy=streams_to_two, broken=broken, prepare=create_table)


if __name__ == "__main__":
    main()
