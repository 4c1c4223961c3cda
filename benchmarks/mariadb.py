"""MariaDB replication figures on real members, printed as JSON.

The same figures as benchmarks/postgresql.py, for topology `replicated` in both replication modes
(async, and sync: semi-synchronous):

- apply time of a 3-member cluster from built images, and of a no-change re-apply;
- switchover and failover (the primary's container stopped, then `failover.yml`) under a client that
  commits one small transaction every 10 ms on whichever member has read_only off (MariaDB has no
  multi-host connection string: the client asks each member in turn after an error): the longest
  gap between two acknowledged commits, and how many acknowledged commits are missing afterwards.

Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import threading
import time
from pathlib import Path

import pymysql
import yaml
from postgresql import Bench, around, stop_the_primary_and_fail_over


class MariaBench(Bench):
    EXAMPLE = "examples/mariadb-replicated.yml"
    PREFIX = "bench-mdb"

    def connect(self, address: str) -> pymysql.Connection:
        secrets = self.home / "secrets" / self.name
        return pymysql.connect(
            host=address,
            port=3306,
            user="app",
            password=yaml.safe_load((secrets / "credentials/app.yml").read_text())["app"],
            database="appdb",
            autocommit=True,
            ssl_ca=str(secrets / "tls/ca.crt"),
            ssl_verify_cert=True,
            ssl_verify_identity=True,
            connect_timeout=1,
            read_timeout=5,
            write_timeout=5,
        )

    def writable(self) -> pymysql.Connection | None:
        """A connection to the member that accepts writes (read_only off), if one answers."""
        for address in self.addresses().values():
            try:
                conn = self.connect(address)
            except pymysql.err.Error:
                continue
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
                if cur.fetchone()[0] == 0:
                    return conn
            conn.close()
        return None

    def primary(self) -> str:
        for name, address in self.addresses().items():
            try:
                with self.connect(address) as conn, conn.cursor() as cur:
                    cur.execute("SELECT @@read_only")
                    if cur.fetchone()[0] == 0:
                        return name
            except pymysql.err.Error:
                continue
        raise SystemExit(f"{self.name}: no member accepts writes")


class Writer(threading.Thread):
    def __init__(self, bench: MariaBench, first_id: int):
        super().__init__(daemon=True)
        self.bench, self.next_id = bench, first_id
        self.acked: list[tuple[int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            try:
                conn = conn or self.bench.writable()
                if conn is not None:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO ticks VALUES (%s)", (self.next_id,))
                    self.acked.append((self.next_id, time.monotonic()))
                    self.next_id += 1
            except pymysql.err.Error:
                # The row may have committed without an acknowledgement: never reuse its id.
                self.next_id += 1
                conn = None
            time.sleep(0.01)

    def result(self) -> dict:
        self.stopping.set()
        self.join(15)
        ids = [i for i, _ in self.acked]
        gap = max((b - a for (_, a), (_, b) in itertools.pairwise(self.acked)), default=0.0)
        conn = self.bench.writable()
        if conn is None:
            raise SystemExit(f"{self.bench.name}: no member accepts writes after the operation")
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM ticks WHERE id BETWEEN %s AND %s", (min(ids), max(ids)))
            present = {r[0] for r in cur.fetchall()}
        return {
            "acknowledged_commits": len(ids),
            "lost_commits": len(set(ids) - present),
            "longest_write_gap_s": round(gap, 3),
        }


def run_mode(work: Path, mode: str) -> dict:
    bench = MariaBench(work, mode)
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    result = {"apply_from_images_s": bench.playbook("cluster_apply")}
    result["noop_apply_s"] = bench.playbook("cluster_apply")
    with bench.writable() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
    result["switchover"] = around(bench, 1, lambda: bench.playbook("switchover"), Writer)

    result["failover_primary_killed"] = around(bench, 1_000_000, lambda: stop_the_primary_and_fail_over(bench), Writer)
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {mode: run_mode(Path(tmp), mode) for mode in ("async", "sync")}
    print(json.dumps({"engine": "mariadb", "topology": "replicated", "members": 3, **figures}, indent=2))


if __name__ == "__main__":
    main()
