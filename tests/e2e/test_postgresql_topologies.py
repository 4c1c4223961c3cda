"""The other PostgreSQL shapes: a standalone member, and synchronous replication."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import applied_cluster, assert_ok
from test_postgresql import address, admin_query, connect, member_host, query

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def pg_single(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "postgresql-standalone.yml", "e2e-single")
    yield cluster
    cluster.purge()


@pytest.fixture(scope="module")
def pg_sync(tmp_path_factory):
    cluster = applied_cluster(
        tmp_path_factory, "postgresql-replicated.yml", "e2e-sync", members=2, replication={"mode": "sync"}
    )
    yield cluster
    cluster.purge()


def test_standalone_is_one_primary_without_replicas(pg_single):
    members = pg_single.members()
    assert list(members) == ["e2e-single-0"]
    host = address(pg_single, "e2e-single-0")
    assert query(pg_single, host, "SELECT pg_is_in_recovery()") == [(False,)]
    assert admin_query(pg_single, "e2e-single-0", "SELECT count(*) FROM pg_stat_replication") == [["0"]]
    query(pg_single, host, "CREATE TABLE IF NOT EXISTS t (id int); INSERT INTO t VALUES (1)")
    assert query(pg_single, host, "SELECT count(*) FROM t") == [(1,)]


def test_sync_replica_acknowledges_every_commit(pg_sync):
    assert admin_query(pg_sync, "e2e-sync-0", "SHOW synchronous_standby_names") == [['ANY 1 ("e2e-sync-1")']]
    assert admin_query(pg_sync, "e2e-sync-0", "SELECT application_name, sync_state FROM pg_stat_replication") == [
        ["e2e-sync-1", "quorum"]
    ]


def test_commit_waits_while_the_sync_replica_is_down(pg_sync):
    replica = member_host(pg_sync, "e2e-sync-1")
    replica.check_output("systemctl stop postgresql@15-main")
    try:
        conn = connect(pg_sync, address(pg_sync, "e2e-sync-0"))
        conn.autocommit = True
        # The commit waits for the missing standby (wait event SyncRep, seen from a second session)
        # until cancelled; PostgreSQL then warns that it committed locally only. Cancelled on a
        # timer instead, a slow machine could cancel the statement before its commit.
        pid, waits = conn.get_backend_pid(), []

        def cancel_once_waiting() -> None:
            with connect(pg_sync, address(pg_sync, "e2e-sync-0")) as watcher, watcher.cursor() as cur:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not waits:
                    cur.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,))
                    if (cur.fetchone() or [None])[0] == "SyncRep":
                        waits.append(time.monotonic())
                    watcher.commit()
                    time.sleep(0.2)
            time.sleep(1)
            conn.cancel()

        canceller = threading.Thread(target=cancel_once_waiting, daemon=True)
        canceller.start()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE sync_check (id int)")
        canceller.join(5)
        conn.close()
        assert waits, "the commit never waited for the synchronous standby"
        assert any("synchronous replication" in notice for notice in conn.notices), conn.notices
    finally:
        replica.check_output("systemctl start postgresql@15-main")
    assert_ok(pg_sync.playbook("cluster_status"))
