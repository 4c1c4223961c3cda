"""MariaDB backups on real members: mariadb-backup full and incremental backups streamed over SSH to
the repository member, the binary log archived as it is written, backup.yml and restore.yml (latest
and point in time) into new clusters, checked in the databases."""

from __future__ import annotations

import time

import pytest
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, restore_target, wait_for
from test_mariadb import admin, query, replica_status, wait_equal_gtids
from test_postgresql import member_host
from test_postgresql_backup import BACKUP, said

pytestmark = pytest.mark.mariadb

NAME = "e2e-mbk"


@pytest.fixture(scope="module")
def mbk(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "mariadb-replicated.yml", NAME, members=2, backup=BACKUP)
    yield cluster
    cluster.purge()


def databases(cluster: Cluster) -> list[str]:
    return sorted(n for n, hv in cluster.members().items() if hv["trove_role"] == "database")


def primary(cluster: Cluster) -> str:
    return next(n for n in databases(cluster) if query(cluster, n, "SELECT @@read_only")[0][0] == 0)


def rows(cluster: Cluster, member: str | None = None) -> tuple[int, int]:
    count, top = query(cluster, member or primary(cluster), "SELECT count(*), max(id) FROM t")[0]
    return count, top


def insert(cluster: Cluster, first: int, last: int) -> None:
    query(cluster, primary(cluster), f"INSERT INTO t SELECT seq FROM seq_{int(first)}_to_{int(last)}")


def repo(cluster: Cluster):
    return member_host(cluster, f"{cluster.name}-repo")


def backups(cluster: Cluster) -> list[dict[str, str]]:
    out = repo(cluster).check_output(
        'cd /srv/data/backup/base && for f in */trove.info; do echo "${f%/*}"; cat "$f"; echo; done'
    )
    found = []
    for block in out.strip().split("\n\n"):
        label, *lines = block.splitlines()
        found.append({"label": label, **dict(line.split("=", 1) for line in lines)})
    return sorted(found, key=lambda b: b["label"])


def backup(cluster: Cluster, kind: str):
    run = cluster.playbook("backup", "-e", f"type={kind}")
    assert_ok(run)
    return run


def archived_gtid_reached(cluster: Cluster) -> bool:
    """The binary log archive holds the primary's last transaction."""
    pos = admin(cluster, primary(cluster), "SELECT @@gtid_binlog_pos AS pos")[0]["pos"]
    out = repo(cluster).run(
        'for f in /srv/data/backup/binlog/*/binlog.[0-9]*; do mariadb-binlog "$f" 2> /dev/null || true; done'
        f" | grep -c 'GTID {pos} '"
    )
    return out.stdout.strip() not in ("", "0")


@pytest.fixture(scope="module")
def history(mbk):
    """Rows 1-100, full backup, 101-200, incremental backup, 201-300, a noted time, 301-400."""
    query(mbk, primary(mbk), "CREATE TABLE t (id bigint PRIMARY KEY)")
    insert(mbk, 1, 100)
    backup(mbk, "full")
    insert(mbk, 101, 200)
    backup(mbk, "incr")
    insert(mbk, 201, 300)
    time.sleep(2)
    noted = query(mbk, primary(mbk), "SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s')")[0][0]
    time.sleep(2)
    insert(mbk, 301, 400)
    wait_for(lambda: archived_gtid_reached(mbk), timeout=60)
    return noted


def test_repository_member_timers_and_archive(mbk):
    assert {n: hv["trove_role"] for n, hv in mbk.members().items()} == {
        f"{NAME}-0": "database",
        f"{NAME}-1": "database",
        f"{NAME}-repo": "repository",
    }
    host = repo(mbk)
    for kind, schedule in (("full", BACKUP["schedule"]), ("incr", BACKUP["incrementalSchedule"])):
        unit = f"trove-backup-{kind}.timer"
        assert host.check_output(f"systemctl is-enabled {unit}") == "enabled"
        assert host.check_output(f"systemctl is-active {unit}") == "active"
        timer = host.file(f"/etc/systemd/system/{unit}").content_string
        assert f"OnCalendar={schedule}" in timer
        assert f"Unit=trove-backup@{kind}.service" in timer
    assert host.check_output("systemctl is-active trove-binlog-archive.service") == "active"
    # The replication password is in a root-only option file, not in the unit or the process list.
    assert host.file("/etc/trove/backup/client.cnf").mode == 0o600
    assert mbk.password("replicator") not in host.check_output("ps -eo args")
    # The repository's key may run the backup command only.
    keys = member_host(mbk, f"{NAME}-0").file("/root/.ssh/authorized_keys").content_string
    assert 'restrict,from="' in keys
    assert 'command="/usr/local/sbin/trove-mariadb-backup-source"' in keys
    refused = host.run(
        f"ssh -i /etc/trove/backup/id_ed25519 -o BatchMode=yes -o UserKnownHostsFile=/etc/trove/backup/known_hosts "
        f"root@{NAME}-0 cat /etc/shadow"
    )
    assert refused.rc != 0
    assert "refused: cat" in refused.stderr


def test_unknown_backup_type_is_refused(mbk):
    run = mbk.playbook("backup", "-e", "type=diff")
    assert run.rc != 0
    assert 'type: "diff" is not a backup type for MariaDB; allowed: full, incr' in said(run)


def test_full_and_incremental_backups_on_the_replica(mbk, history):
    taken = backups(mbk)
    assert [b["type"] for b in taken] == ["full", "incr"]
    assert {b["member"] for b in taken} == {f"{NAME}-1"}
    assert taken[1]["parent"] == taken[0]["label"]
    assert rows(mbk) == (400, 400)


def test_restore_latest_into_a_new_cluster(mbk, history, tmp_path_factory, request):
    target = restore_target(request, tmp_path_factory, mbk, "mariadb-replicated.yml", "e2e-mbk-r1", members=2)
    started = time.monotonic()
    run = target.playbook("restore", "-e", f"source={NAME}")
    assert_ok(run)
    print(f"restore latest with a cloned replica: {time.monotonic() - started:.0f} s")
    assert "restored e2e-mbk-r1 from e2e-mbk: backup " in said(run)
    assert "target latest" in said(run)
    assert "400 rows" in said(run)
    # Every row, including those committed after the last backup (replayed from the binary log archive).
    assert rows(target, "e2e-mbk-r1-0") == (400, 400)
    assert query(target, "e2e-mbk-r1-0", "SELECT @@read_only")[0][0] == 0
    # The replica started from a copy of the restored primary and replicates from it by GTID.
    status = replica_status(target, "e2e-mbk-r1-1")
    assert (status["Master_Host"], status["Slave_IO_Running"], status["Slave_SQL_Running"]) == (
        "e2e-mbk-r1-0",
        "Yes",
        "Yes",
    )
    assert status["Using_Gtid"] == "Slave_Pos"
    assert rows(target, "e2e-mbk-r1-1") == (400, 400)
    # GTIDs went on from the source's (the replayed transactions kept theirs); both members agree.
    source_seq = int(admin(mbk, primary(mbk), "SELECT @@gtid_binlog_pos AS pos")[0]["pos"].split("-")[-1])
    positions = wait_equal_gtids(target, databases(target))
    assert len(set(positions.values())) == 1, positions
    assert int(positions["e2e-mbk-r1-0"].split("-")[-1]) >= source_seq, positions
    # New writes replicate.
    query(target, "e2e-mbk-r1-0", "INSERT INTO t VALUES (1000)")
    wait_for(lambda: rows(target, "e2e-mbk-r1-1") == (401, 1000), timeout=30)
    assert_ok(target.playbook("cluster_status"))


def test_restore_to_a_point_in_time(mbk, history, tmp_path_factory, request):
    target = restore_target(
        request, tmp_path_factory, mbk, "mariadb-replicated.yml", "e2e-mbk-r2", topology="standalone", members=1
    )
    started = time.monotonic()
    run = target.playbook("restore", "-e", f"source={NAME}", "-e", f"target_time='{history}'")
    assert_ok(run)
    print(f"restore to a point in time: {time.monotonic() - started:.0f} s")
    assert f"target {history}" in said(run)
    assert rows(target, "e2e-mbk-r2-0") == (300, 300)

    # A cluster with data is refused unless confirmed by name; its data stays.
    refused = target.playbook("restore", "-e", f"source={NAME}")
    assert refused.rc != 0
    assert "confirm: cluster e2e-mbk-r2 has data on e2e-mbk-r2-0; pass -e confirm=e2e-mbk-r2" in said(refused)
    assert rows(target, "e2e-mbk-r2-0") == (300, 300)


def test_restore_into_the_source_is_refused(mbk):
    run = mbk.playbook("restore", "-e", f"source={NAME}")
    assert run.rc != 0
    assert f"source: {NAME} is this cluster; restore into a new cluster" in said(run)
    assert rows(mbk) == (400, 400)


def archived_binlogs(cluster: Cluster) -> set[str]:
    out = repo(cluster).check_output("cd /srv/data/backup/binlog && ls -1 */binlog.[0-9]*")
    return set(out.split())


def test_retention_keeps_the_newest_fulls(mbk, history):
    first = backups(mbk)[0]["label"]
    # Close the binary log file being written: every file archived so far then ends before the next backups.
    before = archived_binlogs(mbk)
    admin(mbk, primary(mbk), "FLUSH LOCAL BINARY LOGS")
    wait_for(lambda: len(archived_binlogs(mbk) - before) > 0, timeout=60)
    time.sleep(1)
    backup(mbk, "full")
    run = backup(mbk, "full")
    assert f"removed {first}" in run.output
    taken = backups(mbk)
    assert [b["type"] for b in taken] == ["full", "full"]
    assert first not in [b["label"] for b in taken]
    # The archived binary logs only the removed backups needed are gone; the file being written stays.
    after = archived_binlogs(mbk)
    assert after and not after & before, (before, after)


@pytest.mark.slow
def test_restore_latest_with_nothing_committed_since_the_last_backup(mbk, history, tmp_path_factory, request):
    """The archive's newest transaction is the last backup's: mariadb-binlog finds nothing to replay."""
    insert(mbk, 401, 401)
    wait_for(lambda: archived_gtid_reached(mbk), timeout=60)
    backup(mbk, "incr")
    target = restore_target(
        request, tmp_path_factory, mbk, "mariadb-replicated.yml", "e2e-mbk-r3", topology="standalone", members=1
    )
    run = target.playbook("restore", "-e", f"source={NAME}", "-v")
    assert_ok(run)
    assert "target latest" in said(run)
    # mariadb-binlog refuses to start at the archive's last transaction; the replay skips that archive.
    assert f"binlog/{primary(mbk)}/: nothing after 0-" in run.output
    assert rows(target, "e2e-mbk-r3-0") == (401, 401)
    # The restored server's GTIDs go on from the source's (its own converge may have added some).
    source_seq = int(admin(mbk, primary(mbk), "SELECT @@gtid_binlog_pos AS pos")[0]["pos"].split("-")[-1])
    target_pos = admin(target, "e2e-mbk-r3-0", "SELECT @@gtid_binlog_pos AS pos")[0]["pos"]
    assert int(target_pos.split("-")[-1]) >= source_seq, target_pos


def test_second_apply_changes_nothing(mbk):
    assert_unchanged(mbk.playbook("cluster_apply"))


def test_health_names_stopped_replication_and_passes_again_once_it_runs(mbk):
    healthy = mbk.playbook("cluster_health")
    assert_unchanged(healthy)
    assert f"{NAME} is healthy" in healthy.output
    replica = next(n for n in databases(mbk) if n != primary(mbk))
    admin(mbk, replica, "STOP SLAVE")
    try:
        sick = mbk.playbook("cluster_health")
        assert sick.rc != 0
        assert f"{NAME} is not healthy: {replica}: replication is not running" in sick.output
    finally:
        admin(mbk, replica, "START SLAVE")
    wait_for(lambda: mbk.playbook("cluster_health").rc == 0, 60, lambda: mbk.runs[-1].output[-3000:])
