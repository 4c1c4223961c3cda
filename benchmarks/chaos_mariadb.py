"""Faults injected into MariaDB clusters under writes, as JSON.

Topology `replicated`, replication.mode sync (semi-synchronous, AFTER_SYNC, timeout
`mariadb_semisync_timeout`: one day), a client committing one row every 10 ms on the member whose
read_only is off. MariaDB replicated has no failover daemon: failover is the operator's (or an AWX
job's) `failover.yml`, run here as soon as the fault is injected, so the outage figures are a lower
bound for a human (add the time to notice and start the job).

- server_killed: `kill -9` of the primary's mariadbd; systemd starts it again in place, read-only
  (every `replicated` member starts so), and `cluster_apply` makes it writable again (no failover);
- member_killed: the primary's member killed (`podman kill`), `failover.yml`, then the old member
  started again: it must come back read-only (fenced), and `cluster_apply` makes it a replica (or,
  when it holds a commit nobody else has, `member_replace.yml` replaces it);
- primary_cut_off: the primary's member off the network, `failover.yml`, then reconnected and the
  same rejoin. While cut off, the old primary is not fenced (read_only stays off); what keeps it from
  acknowledging a write is semi-sync (no replica can acknowledge). Split brain is counted when,
  after the new primary took writes, the old one had read_only off and semi-sync off (it would
  acknowledge writes alone).

Topology `galera` (3 members), the same client on any member that is ready (wsrep_ready):

- server_killed: `kill -9` of one member's mariadbd: the two others keep the primary component,
  systemd restarts it and it rejoins (IST);
- member_cut_off: one member off the network: the two others keep taking writes; a probe inside the
  cut-off member keeps writing to it and must be refused (non-primary); it rejoins once reconnected.

Invariants (non-zero exit): 0 acknowledged commits lost, no split brain, a restarted primary takes no
writes before `cluster_apply`, no probe write accepted by a cut-off Galera member, and `cluster_apply`
converges after every scenario.

Run with `make chaos` (needs the images: `make images`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
import yaml
from chaos import Poll, cut_off, in_member, killed_in_member, report, run_scenarios, writes_resumed
from mariadb import MariaBench, Writer
from postgresql import ROOT


class ReplicatedBench(MariaBench):
    PREFIX = "chaos-mdb"


class GaleraBench(MariaBench):
    def __init__(self, work: Path):
        super().__init__(work, "sync")
        document = yaml.safe_load((ROOT / "examples/mariadb-galera.yml").read_text())
        document["metadata"]["name"] = self.name = "chaos-galera"
        self.spec = work / f"{self.name}.yml"
        self.spec.write_text(yaml.safe_dump(document))

    def _ready(self, address: str) -> pymysql.Connection | None:
        try:
            conn = self.connect(address)
        except pymysql.err.Error:
            return None
        with conn.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'wsrep_ready'")
            if cur.fetchone()[1] == "ON":
                return conn
        conn.close()
        return None

    def writable(self) -> pymysql.Connection | None:
        """A member in the primary component (a non-primary one answers but refuses writes)."""
        return next(filter(None, map(self._ready, self.addresses().values())), None)

    def primary(self) -> str:
        for name, address in self.addresses().items():
            if conn := self._ready(address):
                conn.close()
                return name
        raise SystemExit(f"{self.name}: no member is in the primary component")


def sql(member: str, query: str, timeout: float = 5) -> str:
    """A query as root over the member's socket: works while it is cut off."""
    return in_member(member, "mariadb", "-NBe", query, timeout=timeout)


def status(member: str, name: str, timeout: float = 5) -> str:
    query = f"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
    return sql(member, query, timeout)


def answers(member: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sql(member, "SELECT 1", timeout=3)
            return True
        except subprocess.SubprocessError:
            time.sleep(1)
    return False


def waiting_commits(member: str) -> int:
    """Sessions whose commit waits for a semi-sync acknowledgement on a returning old primary: no
    replica follows it any more, so they would wait mariadb_semisync_timeout (a day); cluster_apply
    ends them before it sets read_only. Their clients never got an acknowledgement."""
    query = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'"
    return int(sql(member, query))


def read_only_again(member: str, timeout: float = 120) -> bool:
    """Whether the member serves again, read-only, within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sql(member, "SELECT @@read_only", 3) == "1":
                return True
        except subprocess.SubprocessError:
            pass
        time.sleep(0.5)
    return False


def rejoin(bench: ReplicatedBench, old: str) -> dict:
    """The returning old primary: writable before anything touches it? Then the documented way back:
    cluster_apply, or member_replace when it holds commits the new primary never received."""
    up = answers(old)
    writable = up and sql(old, "SELECT @@read_only") == "0"
    waiting = waiting_commits(old) if up else 0

    def stop_and_replace() -> None:
        subprocess.run(["podman", "stop", "-t", "10", old], check=True, capture_output=True)
        bench.playbook("member_replace", "-e", f"member={old}")

    ways = {
        "cluster_apply": lambda: bench.playbook("cluster_apply"),
        # gtid_strict_mode refused it (commits the new primary lacks): replace it...
        "member_replace": lambda: bench.playbook("member_replace", "-e", f"member={old}"),
        # ...which converges the retiring member too, and fails on the same refusal: stop it first.
        "member_replace after podman stop": stop_and_replace,
    }
    way_back = "none of " + ", ".join(ways)
    for name, attempt in ways.items():
        try:
            attempt()
        except SystemExit as failed:
            print(f"{old}: {name} failed: {str(failed)[-600:]}", file=sys.stderr)
            continue
        way_back = name
        break
    return {
        "old_primary_writable_on_return": writable,
        "old_primary_commits_waiting_for_ack": waiting,
        "old_primary_rejoined_by": way_back,
    }


def server_killed(bench: MariaBench, primary: str, writer: Writer) -> dict:
    killed = time.monotonic()
    in_member(primary, "pkill", "-9", "-x", "mariadbd")
    fenced = read_only_again(primary)
    restarted = time.monotonic() - killed
    apply = bench.playbook("cluster_apply")
    return {
        "restarted_read_only": fenced,
        "restarted_after_s": round(restarted, 2),
        "cluster_apply_s": apply,
        "writes_again_after_s": writes_resumed(writer, killed),
    }


def member_killed(bench: ReplicatedBench, primary: str, writer: Writer) -> dict:
    killed = time.monotonic()
    subprocess.run(["podman", "kill", primary], check=True, capture_output=True)
    failover = bench.playbook("failover")
    again = writes_resumed(writer, killed)
    subprocess.run(["podman", "start", primary], check=True, capture_output=True)
    back = rejoin(bench, primary)
    fenced = not back["old_primary_writable_on_return"]
    return {"writes_again_after_s": again, "failover_playbook_s": failover, "restarted_read_only": fenced, **back}


def primary_cut_off(bench: ReplicatedBench, primary: str, writer: Writer) -> dict:
    def would_acknowledge_alone() -> bool:
        """Writable (read_only off) with semi-sync off: it would acknowledge writes nobody else has."""
        try:
            writable = sql(primary, "SELECT @@read_only", 3) == "0"
            return writable and status(primary, "RPL_SEMI_SYNC_MASTER_STATUS") == "OFF"
        except subprocess.SubprocessError:
            return False

    def read_only() -> bool:
        try:
            return sql(primary, "SELECT @@read_only", 3) == "1"
        except subprocess.SubprocessError:
            return True  # not running: takes no writes

    with cut_off(bench, primary) as cut:
        alone, fenced = Poll(would_acknowledge_alone), Poll(read_only)
        alone.start(), fenced.start()
        failover = bench.playbook("failover")
        again = writes_resumed(writer, cut)
        time.sleep(5)
        alone_at, fenced_at = alone.stop(), fenced.stop()
    new_took_writes = cut + again
    return {
        "writes_again_after_s": again,
        "failover_playbook_s": failover,
        "old_primary_read_only_after_s": round(fenced_at[0] - cut, 2) if fenced_at else None,
        "split_brain": any(t > new_took_writes for t in alone_at),
        **rejoin(bench, primary),
    }


def galera_rejoined(member: str, since: float, timeout: float = 180) -> float | None:
    """Seconds from `since` until the member is Synced in a component of 3 again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if status(member, "WSREP_LOCAL_STATE_COMMENT") == "Synced" and status(member, "WSREP_CLUSTER_SIZE") == "3":
                return round(time.monotonic() - since, 2)
        except subprocess.SubprocessError:
            pass
        time.sleep(1)
    return None


def galera_server_killed(bench: GaleraBench, member: str, writer: Writer) -> dict:
    killed = time.monotonic()
    figures = killed_in_member(writer, member, "pkill", "-9", "-x", "mariadbd")
    return {**figures, "member": member, "rejoined_after_s": galera_rejoined(member, killed)}


def galera_member_cut_off(bench: GaleraBench, member: str, writer: Writer) -> dict:
    probe_ids = iter(range(1, 10**9))

    def non_primary() -> bool:
        try:
            return status(member, "WSREP_CLUSTER_STATUS", 3) != "Primary"
        except subprocess.SubprocessError:
            return False

    def takes_a_write() -> bool:
        try:
            sql(member, f"INSERT INTO appdb.probe VALUES ({next(probe_ids)})", timeout=3)
            return True
        except subprocess.SubprocessError:
            return False

    with cut_off(bench, member) as cut:
        refused, probe = Poll(non_primary), Poll(takes_a_write)
        refused.start(), probe.start()
        again = writes_resumed(writer, cut)
        time.sleep(max(0.0, cut + 20 - time.monotonic()))
        refused_at, accepted = refused.stop(), probe.stop()
    reconnected = time.monotonic()
    return {
        "writes_again_after_s": again,
        "member": member,
        "cut_off_member_non_primary_after_s": round(refused_at[0] - cut, 2) if refused_at else None,
        "cut_off_member_took_writes": len(accepted),
        "rejoined_after_reconnect_s": galera_rejoined(member, reconnected),
    }


def semisync_to_two(primary: str) -> bool:
    return status(primary, "RPL_SEMI_SYNC_MASTER_CLIENTS") == "2"


def three_synced(member: str) -> bool:
    return status(member, "WSREP_CLUSTER_SIZE") == "3" and status(member, "WSREP_LOCAL_STATE_COMMENT") == "Synced"


def broken(result: dict) -> list[str]:
    problems = []
    if result["lost_commits"]:
        problems.append(f"{result['lost_commits']} acknowledged commits lost")
    if result.get("restarted_read_only") is False:
        problems.append("the restarted primary took writes before cluster_apply")
    if result.get("split_brain"):
        problems.append("the cut-off primary could acknowledge writes after the new primary took some")
    if "cut_off_member_non_primary_after_s" in result and result["cut_off_member_non_primary_after_s"] is None:
        problems.append("the cut-off Galera member never turned non-primary")
    if result.get("cut_off_member_took_writes"):
        problems.append("the cut-off Galera member accepted writes")
    if "rejoined_after_s" in result and result["rejoined_after_s"] is None:
        problems.append("the killed Galera member did not rejoin")
    if "rejoined_after_reconnect_s" in result and result["rejoined_after_reconnect_s"] is None:
        problems.append("the cut-off Galera member did not rejoin")
    if not result["converged_after_apply"]:
        problems.append("the cluster did not converge after cluster_apply")
    return problems


def create_tables(bench: MariaBench, *names: str):
    def prepare() -> None:
        with bench.writable() as conn, conn.cursor() as cur:
            for name in names:
                cur.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY)")

    return prepare


def main() -> None:
    """Both topologies, or the one named on the command line (replicated or galera)."""
    wanted = sys.argv[1:] or ["replicated", "galera"]
    with tempfile.TemporaryDirectory() as tmp:
        replicated = ReplicatedBench(Path(tmp), "sync")
        galera = GaleraBench(Path(tmp))
        runs = {
            "replicated": lambda: run_scenarios(
                replicated,
                {"server_killed": server_killed, "member_killed": member_killed, "primary_cut_off": primary_cut_off},
                writer_class=Writer,
                healthy=semisync_to_two,
                prepare=create_tables(replicated, "ticks"),
            ),
            "galera": lambda: run_scenarios(
                galera,
                {"server_killed": galera_server_killed, "member_cut_off": galera_member_cut_off},
                writer_class=Writer,
                healthy=three_synced,
                prepare=create_tables(galera, "ticks", "probe"),
            ),
        }
        results = {topology: runs[topology]() for topology in wanted}
    flat = {
        f"{topology}.{name}": figures for topology, scenarios in results.items() for name, figures in scenarios.items()
    }
    report({"engine": "mariadb", "replicated_mode": "sync"}, flat, broken)


if __name__ == "__main__":
    main()
