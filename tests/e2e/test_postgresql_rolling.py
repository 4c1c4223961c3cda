"""Rolling restarts and the rolling minor upgrade on real members, with a client writing throughout."""

from __future__ import annotations

import subprocess
import time

import psycopg2
import pytest
import yaml
from conftest import applied_cluster, assert_ok, older_release, wait_for
from test_postgresql import address, admin_query, primary_of, query, roles
from test_postgresql_day2 import Writer, missing_on_primary

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]
PACKAGES = ("postgresql-15", "postgresql-client-15", "libpq5")


@pytest.fixture(scope="module")
def pg_roll(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "postgresql-replicated.yml", "e2e-roll", replication={"mode": "sync"})
    query(cluster, address(cluster, "e2e-roll-0"), "CREATE TABLE IF NOT EXISTS ticks (id bigint PRIMARY KEY)")
    yield cluster
    cluster.purge()


def started(cluster) -> dict[str, float]:
    """Each member's postmaster start time, as epoch seconds."""
    return {
        name: float(admin_query(cluster, name, "SELECT extract(epoch FROM pg_postmaster_start_time())")[0][0])
        for name in cluster.members()
    }


def apply_parameters(cluster, tmp_path, **parameters) -> None:
    document = yaml.safe_load(cluster.spec_file.read_text())
    document["spec"]["parameters"].update(parameters)
    cluster.spec_file.write_text(yaml.safe_dump(document))
    assert_ok(cluster.playbook("cluster_apply"))


def test_restart_parameter_rolls_replicas_first_then_switches_over(pg_roll, tmp_path):
    old_primary, before = primary_of(pg_roll), started(pg_roll)
    writer = Writer(pg_roll, 1)
    writer.start()
    time.sleep(1)
    apply_parameters(pg_roll, tmp_path, max_connections=150)
    time.sleep(1)
    acked = writer.stop()

    after = started(pg_roll)
    assert all(after[m] > before[m] for m in before), "every member restarted"
    replicas = [m for m in before if m != old_primary]
    # The replicas restarted one after the other, before the old primary went down.
    assert abs(after[replicas[0]] - after[replicas[1]]) > 0.5
    assert max(after[r] for r in replicas) < after[old_primary]
    assert primary_of(pg_roll) != old_primary
    assert roles(pg_roll)[old_primary] == "replica"
    for member in before:
        assert admin_query(pg_roll, member, "SHOW max_connections") == [["150"]]
    assert missing_on_primary(pg_roll, acked) == []
    assert writer.longest_gap() < 5.0  # the 2 s target is measured by `make bench`


def test_lowering_a_hot_standby_parameter_restarts_the_primary_first(pg_roll, tmp_path):
    leader, before = primary_of(pg_roll), started(pg_roll)
    apply_parameters(pg_roll, tmp_path, max_connections=100)
    after = started(pg_roll)
    assert primary_of(pg_roll) == leader
    assert all(after[leader] < after[m] for m in after if m != leader)
    assert all(after[m] > before[m] for m in before)
    streaming = admin_query(pg_roll, leader, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    assert streaming == [["2"]]


def podman_exec(member: str, *argv: str) -> str:
    return subprocess.run(["podman", "exec", member, *argv], capture_output=True, text=True, check=True).stdout


def server_versions(cluster) -> dict[str, str]:
    return {m: admin_query(cluster, m, "SHOW server_version")[0][0] for m in cluster.members()}


def test_upgrade_rolls_every_member_to_the_newest_minor_release(pg_roll):
    members = sorted(pg_roll.members())
    installed, older = older_release(podman_exec, members[0], "postgresql-15")
    # Put every member on the older release, as if the cluster had been built before the update.
    for member in members:
        if member != members[0]:
            podman_exec(member, "apt-get", "update", "-qq")
        podman_exec(
            member, "apt-get", "install", "-y", "-qq", "--allow-downgrades", *(f"{p}={older}" for p in PACKAGES)
        )
        podman_exec(member, "systemctl", "restart", "postgresql@15-main")
    assert {v.split(" ")[0] for v in server_versions(pg_roll).values()} == {older.split("-")[0]}

    old_primary = primary_of(pg_roll)
    writer = Writer(pg_roll, 1_000_000)
    writer.start()
    time.sleep(1)
    run = pg_roll.playbook("upgrade")
    time.sleep(1)
    acked = writer.stop()
    assert_ok(run)
    assert {v.split(" ")[0] for v in server_versions(pg_roll).values()} == {installed.split("-")[0]}
    assert primary_of(pg_roll) != old_primary
    assert missing_on_primary(pg_roll, acked) == []
    assert writer.longest_gap() < 5.0  # the 2 s target is measured by `make bench`

    again = pg_roll.playbook("upgrade")
    assert_ok(again)
    assert all(counts["changed"] == 0 for counts in again.recap().values())


def through_proxy(cluster, member: str, port: int, sql: str = "SELECT pg_is_in_recovery()"):
    """Query through one member's proxy port, verifying the certificate against the cluster name."""
    with (
        psycopg2.connect(
            host=cluster.name,
            hostaddr=address(cluster, member),
            port=port,
            dbname="appdb",
            user="app",
            password=cluster.password("app"),
            sslmode="verify-full",
            sslrootcert=str(cluster.ca_file),
            connect_timeout=5,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql)
        return cur.fetchone()[0]


def test_proxy_routes_to_the_primary_and_the_replicas(pg_roll):
    document = yaml.safe_load(pg_roll.spec_file.read_text())
    document["spec"]["endpoint"]["proxy"] = {"enabled": True}
    pg_roll.spec_file.write_text(yaml.safe_dump(document))
    run = pg_roll.playbook("cluster_apply")
    assert_ok(run)
    assert f"postgresql://app@{pg_roll.name}:5000," in run.output
    members = sorted(pg_roll.members())
    # HAProxy marks servers up or down after its first checks, a second or two after the apply.
    for member in members:
        wait_for(lambda m=member: through_proxy(pg_roll, m, 5000) is False, timeout=30)
        wait_for(lambda m=member: through_proxy(pg_roll, m, 5001) is True, timeout=30)
    # The monitor user that HAProxy checks with is refused from anywhere but the members.
    with pytest.raises(psycopg2.OperationalError, match="trove_monitor"):
        psycopg2.connect(
            host=address(pg_roll, members[0]),
            dbname="postgres",
            user="trove_monitor",
            password=pg_roll.password("trove_monitor"),
            sslmode="require",
            connect_timeout=5,
        )

    old_primary = primary_of(pg_roll)
    assert_ok(pg_roll.playbook("switchover"))
    assert primary_of(pg_roll) != old_primary
    new_primary = address(pg_roll, primary_of(pg_roll))
    wait_for(
        lambda: (
            through_proxy(pg_roll, old_primary, 5000, "SELECT inet_server_addr()::text").split("/")[0] == new_primary
        ),
        timeout=30,
    )
    again = pg_roll.playbook("cluster_apply")
    assert_ok(again)
    assert all(counts["changed"] == 0 for counts in again.recap().values())
