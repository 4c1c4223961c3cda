"""PostgreSQL figures on real members, printed as JSON.

- apply time of a 3-member replicated cluster from built images, and of a no-change re-apply;
- switchover and failover under a client that commits one small transaction every 10 ms through
  the multi-host DSN: the longest gap between two acknowledged commits, and how many acknowledged
  commits are missing afterwards.

Run with `make bench` (needs the images: `make images`).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "bench-pg"


class Bench:
    EXAMPLE = "examples/postgresql-replicated.yml"
    PREFIX = NAME

    def __init__(self, work: Path, mode: str):
        document = yaml.safe_load((ROOT / self.EXAMPLE).read_text())
        document["metadata"]["name"] = f"{self.PREFIX}-{mode}"
        document["spec"]["replication"] = {"mode": mode}
        self.name = document["metadata"]["name"]
        self.spec = work / f"{self.name}.yml"
        self.spec.write_text(yaml.safe_dump(document))
        self.home = work / "home"
        self.env = dict(os.environ, TROVE_HOME=str(self.home), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))

    def playbook(self, name: str, *extra: str) -> float:
        started = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), f"playbooks/{name}.yml", "-e", f"cluster_file={self.spec}", *extra],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return round(time.monotonic() - started, 1)

    def addresses(self) -> dict[str, str]:
        out = subprocess.run(
            ["podman", "ps", "--all", "--format", "json", "--filter", f"label=trove.dbaas/cluster={self.name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {c["Labels"]["trove.dbaas/member"]: c["Labels"]["trove.dbaas/address"] for c in json.loads(out)}

    def connect(self, hosts: str):
        password = yaml.safe_load((self.home / "secrets" / self.name / "credentials/app.yml").read_text())["app"]
        conn = psycopg2.connect(
            host=hosts,
            port=5432,
            dbname="appdb",
            user="app",
            password=password,
            sslmode="verify-full",
            sslrootcert=str(self.home / "secrets" / self.name / "tls/ca.crt"),
            target_session_attrs="read-write",
            connect_timeout=2,
            # A dead member sends no reset: give up on it in seconds, not minutes.
            keepalives_idle=1,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=3000,
        )
        conn.autocommit = True
        return conn

    def primary(self) -> str:
        return next(n for n, a in self.addresses().items() if self._is_primary(a))

    def _is_primary(self, address: str) -> bool:
        try:
            with self.connect(address) as conn, conn.cursor() as cur:
                cur.execute("SELECT NOT pg_is_in_recovery()")
                return cur.fetchone()[0]
        except psycopg2.Error:
            return False


class Writer(threading.Thread):
    def __init__(self, bench: Bench, first_id: int):
        super().__init__(daemon=True)
        self.bench, self.next_id = bench, first_id
        self.hosts = ",".join(bench.addresses().values())
        self.acked: list[tuple[int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            try:
                conn = conn or self.bench.connect(self.hosts)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO ticks VALUES (%s)", (self.next_id,))
                self.acked.append((self.next_id, time.monotonic()))
                self.next_id += 1
            except psycopg2.Error:
                # The row may have committed without an acknowledgement (the primary died between
                # its commit and the reply): never reuse its id.
                self.next_id += 1
                conn = None
            time.sleep(0.01)

    def stop(self) -> tuple[list[int], float]:
        """Stop writing: the acknowledged ids, and the longest gap between two acknowledgements."""
        self.stopping.set()
        self.join(10)
        times = [t for _, t in self.acked]
        return [i for i, _ in self.acked], max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def result(self) -> dict:
        ids, gap = self.stop()
        with self.bench.connect(self.hosts) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM ticks WHERE id BETWEEN %s AND %s", (min(ids), max(ids)))
            present = {r[0] for r in cur.fetchall()}
        return {
            "acknowledged_commits": len(ids),
            "lost_commits": len(set(ids) - present),
            "longest_write_gap_s": round(gap, 3),
        }


def around(bench: Bench, first_id: int, action, writer_class: type = Writer) -> dict:
    """The action's figures under a client writing every 10 ms (`writer_class(bench, first_id)`)."""
    writer = writer_class(bench, first_id)
    writer.start()
    time.sleep(2)
    seconds = action()
    time.sleep(2)
    return {**writer.result(), "playbook_s": seconds}


def apply_and_switch_over(bench: Bench) -> dict:
    """Fresh cluster, no-change apply, then a switchover under writes."""
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    result = {"apply_from_images_s": bench.playbook("cluster_apply")}
    result["noop_apply_s"] = bench.playbook("cluster_apply")
    with bench.connect(",".join(bench.addresses().values())) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
    result["switchover"] = around(bench, 1, lambda: bench.playbook("switchover"))
    return result


def stop_the_primary_and_fail_over(bench: Bench) -> float:
    """Stop the primary's container at once, then time failover.yml."""
    subprocess.run(["podman", "stop", "-t", "0", bench.primary()], check=True, capture_output=True)
    return bench.playbook("failover")


def run_mode(work: Path, mode: str) -> dict:
    bench = Bench(work, mode)
    result = apply_and_switch_over(bench)

    result["failover_primary_killed"] = around(bench, 1_000_000, lambda: stop_the_primary_and_fail_over(bench))
    bench.playbook("cluster_delete", "-e", f"confirm={bench.name}", "-e", "purge=true")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        figures = {mode: run_mode(Path(tmp), mode) for mode in ("async", "sync")}
    print(json.dumps({"engine": "postgresql", "topology": "replicated", "members": 3, **figures}, indent=2))


if __name__ == "__main__":
    main()
