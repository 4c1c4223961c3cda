"""PostgreSQL backups on real members: pgBackRest repository member, backup.yml and restore.yml
(latest and point in time) into new clusters, checked in the databases."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Cluster, applied_cluster, assert_ok, restore_target
from test_postgresql import address, admin_query, member_host, query

pytestmark = pytest.mark.postgresql

NAME = "e2e-bk"
BACKUP = {
    "enabled": True,
    "schedule": "*-*-* 03:00:00",
    "incrementalSchedule": "*-*-* 09,15,21:00:00",
    "retention": {"full": 2},
}


@pytest.fixture(scope="module")
def pg_bk(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "postgresql-replicated.yml", NAME, members=2, backup=BACKUP)
    yield cluster
    cluster.purge()


def databases(cluster: Cluster) -> dict[str, dict]:
    return {n: hv for n, hv in cluster.members().items() if hv["trove_role"] == "database"}


def primary(cluster: Cluster) -> str:
    in_recovery = {
        n: query(cluster, hv["ansible_host"], "SELECT pg_is_in_recovery()")[0][0]
        for n, hv in databases(cluster).items()
    }
    return next(n for n, standby in in_recovery.items() if not standby)


def rows(cluster: Cluster, member: str | None = None) -> tuple[int, int]:
    count, top = query(cluster, address(cluster, member or primary(cluster)), "SELECT count(*), max(id) FROM t")[0]
    return count, top


def insert(cluster: Cluster, first: int, last: int) -> None:
    query(cluster, address(cluster, primary(cluster)), f"INSERT INTO t SELECT generate_series({first}, {last})")


def backups(cluster: Cluster) -> list[dict]:
    out = member_host(cluster, f"{cluster.name}-repo").check_output(
        f"runuser -u postgres -- pgbackrest --stanza={cluster.name} --output=json info"
    )
    return json.loads(out)[0]["backup"]


def said(run) -> str:
    """Playbook output with line wrapping undone."""
    return " ".join(run.output.split())


def backup(cluster: Cluster, kind: str) -> None:
    assert_ok(cluster.playbook("backup", "-e", f"type={kind}"))


@pytest.fixture(scope="module")
def history(pg_bk):
    """Rows 1-100, full backup, 101-200, incremental backup, 201-300, a noted time, 301-400."""
    query(pg_bk, address(pg_bk, primary(pg_bk)), "CREATE TABLE t (id bigint PRIMARY KEY)")
    insert(pg_bk, 1, 100)
    backup(pg_bk, "full")
    insert(pg_bk, 101, 200)
    backup(pg_bk, "incr")
    insert(pg_bk, 201, 300)
    time.sleep(1.5)
    noted = query(
        pg_bk,
        address(pg_bk, primary(pg_bk)),
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )[0][0]
    time.sleep(1.5)
    insert(pg_bk, 301, 400)
    return noted


def test_repository_member_is_not_a_database_member(pg_bk):
    members = pg_bk.members()
    assert {n: hv["trove_role"] for n, hv in members.items()} == {
        "e2e-bk-0": "database",
        "e2e-bk-1": "database",
        "e2e-bk-repo": "repository",
    }
    assert admin_query(pg_bk, "e2e-bk-0", "SHOW archive_mode") == [["on"]]
    repo = member_host(pg_bk, "e2e-bk-repo")
    repo.check_output("runuser -u postgres -- pgbackrest --stanza=e2e-bk check")
    # No SSH keys between guests: members and repository talk pgBackRest's TLS protocol only.
    assert not repo.file("/var/lib/postgresql/.ssh/id_ed25519").exists
    assert repo.socket("tcp://0.0.0.0:8432").is_listening


def test_timers_follow_the_schedule(pg_bk):
    repo = member_host(pg_bk, "e2e-bk-repo")
    for kind, schedule in (("full", BACKUP["schedule"]), ("incr", BACKUP["incrementalSchedule"])):
        unit = f"trove-backup-{kind}.timer"
        assert repo.check_output(f"systemctl is-enabled {unit}") == "enabled"
        assert repo.check_output(f"systemctl is-active {unit}") == "active"
        timer = repo.file(f"/etc/systemd/system/{unit}").content_string
        assert f"OnCalendar={schedule}" in timer
        assert f"Unit=trove-backup@{kind}.service" in timer
    assert "--stanza=e2e-bk --type=%i backup" in repo.check_output("systemctl cat trove-backup@full.service")


def test_unknown_backup_type_is_refused(pg_bk):
    run = pg_bk.playbook("backup", "-e", "type=weekly")
    assert run.rc != 0
    assert "type: 'weekly' is not allowed; allowed: diff, full, incr" in said(run)


def test_full_and_incremental_backups(pg_bk, history):
    kinds = [b["type"] for b in backups(pg_bk)]
    assert kinds == ["full", "incr"]
    assert rows(pg_bk) == (400, 400)


def test_restore_latest_into_a_new_cluster(pg_bk, history, tmp_path_factory, request):
    target = restore_target(
        request, tmp_path_factory, pg_bk, "postgresql-replicated.yml", "e2e-bk-r1", members=2, backup={"enabled": True}
    )
    run = target.playbook("restore", "-e", f"source={NAME}")
    assert_ok(run)
    assert "restored e2e-bk-r1 from e2e-bk: backup " in said(run)
    assert "target latest" in said(run)
    # Every row, including those committed after the last backup (replayed from the WAL archive).
    assert rows(target, "e2e-bk-r1-0") == (400, 400)
    assert admin_query(target, "e2e-bk-r1-0", "SELECT pg_is_in_recovery()") == [["f"]]
    # New timeline, replica cloned from the restored primary, its own stanza in its own repository.
    assert int(admin_query(target, "e2e-bk-r1-0", "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]) >= 2
    assert admin_query(target, "e2e-bk-r1-0", "SELECT application_name, state FROM pg_stat_replication") == [
        ["e2e-bk-r1-1", "streaming"]
    ]
    assert rows(target, "e2e-bk-r1-1") == (400, 400)
    member_host(target, "e2e-bk-r1-repo").check_output("runuser -u postgres -- pgbackrest --stanza=e2e-bk-r1 check")
    # The client certificate for the source's repository is gone.
    assert not member_host(target, "e2e-bk-r1-0").file("/etc/trove/restore").exists


def test_restore_to_a_point_in_time(pg_bk, history, tmp_path_factory, request):
    target = restore_target(
        request, tmp_path_factory, pg_bk, "postgresql-replicated.yml", "e2e-bk-r2", topology="standalone", members=1
    )
    run = target.playbook("restore", "-e", f"source={NAME}", "-e", f"target_time='{history}'")
    assert_ok(run)
    assert f"target {history}" in said(run)
    assert rows(target, "e2e-bk-r2-0") == (300, 300)

    # A cluster with data is refused unless confirmed by name; its data stays.
    refused = target.playbook("restore", "-e", f"source={NAME}")
    assert refused.rc != 0
    assert "confirm: cluster e2e-bk-r2 has data on e2e-bk-r2-0; pass -e confirm=e2e-bk-r2" in said(refused)
    assert rows(target, "e2e-bk-r2-0") == (300, 300)


def test_bad_restore_requests_are_refused(pg_bk, tmp_path_factory, request):
    target = restore_target(
        request, tmp_path_factory, pg_bk, "postgresql-replicated.yml", "e2e-bk-r3", topology="standalone", members=1
    )
    run = target.playbook("restore", "-e", "source=e2e-nothing")
    assert run.rc != 0
    assert "source: e2e-nothing is not a cluster with a backup repository; clusters with one:" in said(run)
    assert "e2e-bk" in said(run).split("clusters with one:")[1]
    assert target.members() == {}


def test_backups_continue_after_a_switchover(pg_bk, history):
    before = primary(pg_bk)
    assert_ok(pg_bk.playbook("switchover"))
    assert primary(pg_bk) != before
    insert(pg_bk, 401, 500)
    backup(pg_bk, "diff")
    assert backups(pg_bk)[-1]["type"] == "diff"
    member_host(pg_bk, "e2e-bk-repo").check_output("runuser -u postgres -- pgbackrest --stanza=e2e-bk check")


def test_retention_keeps_the_newest_fulls(pg_bk, history):
    first = backups(pg_bk)[0]["label"]
    backup(pg_bk, "full")
    backup(pg_bk, "full")
    fulls = [b["label"] for b in backups(pg_bk) if b["type"] == "full"]
    assert len(fulls) == 2
    assert first not in fulls


def test_second_apply_changes_nothing(pg_bk):
    run = pg_bk.playbook("cluster_apply")
    assert_ok(run)
    assert {host: counts["changed"] for host, counts in run.recap().items()} == dict.fromkeys(
        ["e2e-bk-0", "e2e-bk-1", "e2e-bk-repo", "localhost"], 0
    )
