"""PostgreSQL role changes on real members: switchover and failover, checked in the database."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg2
import pytest
import yaml
from conftest import applied_cluster, assert_ok
from test_postgresql import address, admin_query, query, roles

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def pg_ha(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "postgresql-replicated.yml", "e2e-day2")
    primary = address(cluster, "e2e-day2-0")
    query(cluster, primary, "CREATE TABLE IF NOT EXISTS ticks (id bigint PRIMARY KEY)")
    yield cluster
    cluster.purge()


class Writer(threading.Thread):
    """Commits one row every 10 ms through the multi-host DSN; remembers what was acknowledged."""

    def __init__(self, cluster, start: int):
        super().__init__(daemon=True)
        self.cluster, self.next_id, self.acked, self.times = cluster, start, [], []
        self.hosts = ",".join(hv["ansible_host"] for hv in cluster.members().values())
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(
                        host=self.hosts,
                        port=5432,
                        dbname="appdb",
                        user="app",
                        password=self.cluster.password("app"),
                        sslmode="verify-full",
                        sslrootcert=str(self.cluster.ca_file),
                        target_session_attrs="read-write",
                        connect_timeout=2,
                        # A dead member sends no reset: give up on it in seconds, not minutes.
                        keepalives_idle=1,
                        keepalives_interval=1,
                        keepalives_count=3,
                        tcp_user_timeout=3000,
                    )
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO ticks VALUES (%s)", (self.next_id,))
                self.acked.append(self.next_id)
                self.times.append(time.monotonic())
                self.next_id += 1
            except psycopg2.Error:
                # The row may have committed without an acknowledgement (the primary died between
                # its commit and the reply): never reuse its id.
                self.next_id += 1
                conn = None
            time.sleep(0.01)

    def stop(self) -> list[int]:
        self.stopping.set()
        self.join(10)
        return self.acked

    def longest_gap(self) -> float:
        """Longest time, in seconds, between two acknowledged commits."""
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


def missing_on_primary(cluster, acked: list[int]) -> list[int]:
    primary = next(n for n, r in roles(cluster).items() if r == "primary")
    rows = query(cluster, address(cluster, primary), f"SELECT id FROM ticks WHERE id >= {min(acked)}")
    return sorted(set(acked) - {r[0] for r in rows})


def timeline(cluster, member: str) -> int:
    return int(admin_query(cluster, member, "SELECT timeline_id FROM pg_control_checkpoint()")[0][0])


def test_switchover_refuses_an_unknown_target(pg_ha):
    run = pg_ha.playbook("switchover", "-e", "target=e2e-day2-9")
    assert run.rc != 0
    assert (
        "target: e2e-day2-9 cannot become primary (not a member; members: e2e-day2-0, e2e-day2-1, e2e-day2-2)"
        in run.output
    )
    assert roles(pg_ha)["e2e-day2-0"] == "primary"


def test_switchover_to_a_named_replica_loses_no_commit(pg_ha):
    before = timeline(pg_ha, "e2e-day2-0")
    writer = Writer(pg_ha, 1)
    writer.start()
    time.sleep(1)
    run = pg_ha.playbook("switchover", "-e", "target=e2e-day2-2")
    time.sleep(1)
    acked = writer.stop()
    assert_ok(run)
    assert roles(pg_ha) == {"e2e-day2-0": "replica", "e2e-day2-1": "replica", "e2e-day2-2": "primary"}
    assert len(acked) > 100
    assert missing_on_primary(pg_ha, acked) == []
    assert timeline(pg_ha, "e2e-day2-2") == before + 1
    streaming = admin_query(pg_ha, "e2e-day2-2", "SELECT application_name, state FROM pg_stat_replication ORDER BY 1")
    assert streaming == [["e2e-day2-0", "streaming"], ["e2e-day2-1", "streaming"]]
    # The demoted primary keeps no replication slots (they would hold WAL forever).
    assert admin_query(pg_ha, "e2e-day2-0", "SELECT count(*) FROM pg_replication_slots") == [["0"]]


def test_failover_is_refused_while_the_primary_answers(pg_ha):
    run = pg_ha.playbook("failover")
    assert run.rc != 0
    assert "primary e2e-day2-2 still answers" in run.output
    assert roles(pg_ha)["e2e-day2-2"] == "primary"


def test_failover_promotes_a_replica_and_the_old_primary_rejoins(pg_ha):
    writer = Writer(pg_ha, 1_000_000)
    writer.start()
    time.sleep(1)
    subprocess.run(["podman", "stop", "-t", "5", "e2e-day2-2"], check=True, capture_output=True)
    run = pg_ha.playbook("failover")
    time.sleep(1)
    acked = writer.stop()
    assert_ok(run)
    members = pg_ha.members()
    assert members["e2e-day2-2"]["trove_state"] == "exited"
    live = {n: r for n, r in roles_of_running(pg_ha).items()}
    assert sorted(live.values()) == ["primary", "replica"]
    # Acknowledged commits the old primary had shipped before it stopped are all there.
    assert missing_on_primary_running(pg_ha, acked) == []

    subprocess.run(["podman", "start", "e2e-day2-2"], check=True, capture_output=True)
    assert_ok(pg_ha.playbook("cluster_apply"))
    assert sorted(roles(pg_ha).values()) == ["primary", "replica", "replica"]
    assert roles(pg_ha)["e2e-day2-2"] == "replica"


def roles_of_running(cluster) -> dict[str, str]:
    out = {}
    for name, hv in cluster.members().items():
        if hv["trove_state"] == "running":
            standby = query(cluster, hv["ansible_host"], "SELECT pg_is_in_recovery()")[0][0]
            out[name] = "replica" if standby else "primary"
    return out


def missing_on_primary_running(cluster, acked: list[int]) -> list[int]:
    primary = next(n for n, r in roles_of_running(cluster).items() if r == "primary")
    rows = query(cluster, address(cluster, primary), f"SELECT id FROM ticks WHERE id >= {min(acked)}")
    return sorted(set(acked) - {r[0] for r in rows})


def apply_with(cluster, tmp_path, **spec) -> None:
    """Apply the cluster's document with `spec` changes, and keep it as the cluster's document."""
    document = yaml.safe_load(cluster.spec_file.read_text())
    document["spec"].update(spec)
    changed = tmp_path / "cluster.yml"
    changed.write_text(yaml.safe_dump(document))
    assert_ok(cluster.playbook("cluster_apply", spec_file=changed))
    cluster.spec_file.write_text(changed.read_text())


def volumes(cluster) -> list[str]:
    out = subprocess.run(
        ["podman", "volume", "ls", "--format", "{{.Name}}", "--filter", f"label=trove.dbaas/cluster={cluster.name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(out.split())


def test_scale_up_adds_a_streaming_replica(pg_ha, tmp_path):
    apply_with(pg_ha, tmp_path, members=4)
    assert sorted(roles(pg_ha).values()) == ["primary", "replica", "replica", "replica"]
    primary = next(n for n, r in roles(pg_ha).items() if r == "primary")
    query(pg_ha, address(pg_ha, primary), "INSERT INTO ticks VALUES (-1)")
    time.sleep(1)
    assert query(pg_ha, address(pg_ha, "e2e-day2-3"), "SELECT count(*) FROM ticks WHERE id = -1") == [(1,)]


def test_replacing_the_primary_moves_the_role_and_retires_the_old_member(pg_ha):
    primary = next(n for n, r in roles(pg_ha).items() if r == "primary")
    count = query(pg_ha, address(pg_ha, primary), "SELECT count(*) FROM ticks")[0][0]
    assert_ok(pg_ha.playbook("member_replace", "-e", f"member={primary}"))
    now = roles(pg_ha)
    assert primary not in now and "e2e-day2-4" in now
    assert sorted(now.values()) == ["primary", "replica", "replica", "replica"]
    assert f"{primary}-data" not in volumes(pg_ha)
    new_primary = next(n for n, r in now.items() if r == "primary")
    assert query(pg_ha, address(pg_ha, new_primary), "SELECT count(*) FROM ticks") == [(count,)]
    streaming = admin_query(pg_ha, new_primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert streaming == [["3"]]


def test_replace_refuses_an_unknown_member(pg_ha):
    run = pg_ha.playbook("member_replace", "-e", "member=e2e-day2-77")
    assert run.rc != 0
    assert "member: e2e-day2-77 is not a member of e2e-day2" in run.output


def test_replacing_a_replica_that_cannot_start_leaves_it_alone(pg_ha):
    primary = next(n for n, r in roles(pg_ha).items() if r == "primary")
    broken = min(n for n, r in roles(pg_ha).items() if r == "replica")
    # Its server stopped and cannot start again (as on a full disk): converging it would fail.
    for argv in (["systemctl", "stop", "postgresql@15-main"], ["chmod", "000", "/srv/data/postgresql/15/main"]):
        subprocess.run(["podman", "exec", broken, *argv], check=True, capture_output=True, timeout=60)
    assert_ok(pg_ha.playbook("member_replace", "-e", f"member={broken}"))
    now = roles(pg_ha)
    assert broken not in now and "e2e-day2-5" in now
    assert now[primary] == "primary" and sorted(now.values()) == ["primary", "replica", "replica", "replica"]
    streaming = admin_query(pg_ha, primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert streaming == [["3"]]


def test_scale_down_removes_replicas_and_their_slots(pg_ha, tmp_path):
    apply_with(pg_ha, tmp_path, members=2)
    now = roles(pg_ha)
    assert sorted(now.values()) == ["primary", "replica"]
    assert len(volumes(pg_ha)) == 2
    primary = next(n for n, r in now.items() if r == "primary")
    slots = admin_query(pg_ha, primary, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
    replica = next(n for n, r in now.items() if r == "replica")
    assert slots == [[replica.replace("-", "_")]]
