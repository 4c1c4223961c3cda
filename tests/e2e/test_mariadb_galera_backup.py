"""MariaDB Galera backups and day-2 work on real members: mariadb-backup full and incremental backups
from a Synced member, the binary log archived from one member and resumed from another when it
leaves, restore.yml into a new Galera cluster (point in time) and into a standalone one (latest),
and credential and certificate rotation on the running cluster.

One 3-member cluster with its repository for the module; the tests run in file order.
"""

from __future__ import annotations

import subprocess
import time

import pymysql
import pytest
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, restore_target, wait_for
from test_mariadb import admin, query
from test_mariadb_backup import backup, backups, repo
from test_mariadb_galera import assert_synced
from test_postgresql import address, member_host, served_serial
from test_postgresql_backup import BACKUP, said

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

NAME = "e2e-gbk"
MEMBERS = [f"{NAME}-0", f"{NAME}-1", f"{NAME}-2"]


@pytest.fixture(scope="module")
def gbk(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "mariadb-galera.yml", NAME, backup=BACKUP)
    yield cluster
    cluster.purge()


def rows(cluster: Cluster, member: str, upto: int = 2**62) -> tuple[int, int, int]:
    """Row count, highest id and a checksum of the rows of t with an id up to `upto`."""
    sql = "SELECT count(*), max(id), sum(crc32(concat(id, ':', v))) FROM t WHERE id <= %s"
    count, top, checksum = query(cluster, member, sql, args=(upto,))[0]
    return count, top, int(checksum)


def insert(cluster: Cluster, member: str, first: int, last: int) -> None:
    query(cluster, member, f"INSERT INTO t SELECT seq, md5(seq) FROM seq_{int(first)}_to_{int(last)}")


def archived_gtids(cluster: Cluster) -> dict[str, list[int]]:
    """Sequence numbers of the Galera GTID domain (0) in the archived binary logs, by member directory."""
    out = repo(cluster).check_output(
        "cd /srv/data/backup/binlog && for d in */; do for f in $d/binlog.[0-9]*; do"
        ' mariadb-binlog "$f" 2> /dev/null'
        ' | sed -n "s|^#.*[[:space:]]GTID 0-[0-9]*-\\([0-9]*\\) .*|${d%/} \\1|p"; done; done'
    )
    found: dict[str, list[int]] = {}
    for line in out.splitlines():
        member, seq = line.split()
        found.setdefault(member, []).append(int(seq))
    return found


def binlog_pos(cluster: Cluster, member: str) -> str:
    return admin(cluster, member, "SELECT @@gtid_binlog_pos AS pos")[0]["pos"]


def last_gtid_seq(cluster: Cluster, member: str) -> int:
    return max(int(g.split("-")[2]) for g in binlog_pos(cluster, member).split(",") if g.startswith("0-"))


def archived(cluster: Cluster, member: str, seq: int) -> bool:
    return seq in archived_gtids(cluster).get(member, [])


def systemctl(cluster: Cluster, member: str, *args: str) -> None:
    member_host(cluster, member).check_output("systemctl " + " ".join(args))


@pytest.fixture(scope="module")
def history(gbk):
    """Rows 1-100, full backup, 101-200, incremental backup, 201-300, a noted time, 301-400; then the
    member the archive reads stops, 401-500 are written elsewhere, and it comes back."""
    query(gbk, MEMBERS[0], "CREATE TABLE t (id bigint PRIMARY KEY, v char(32))")
    insert(gbk, MEMBERS[0], 1, 100)
    backup(gbk, "full")
    insert(gbk, MEMBERS[2], 101, 200)
    backup(gbk, "incr")
    insert(gbk, MEMBERS[1], 201, 300)
    time.sleep(2)
    noted = query(gbk, MEMBERS[0], "SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s')")[0][0]
    time.sleep(2)
    insert(gbk, MEMBERS[0], 301, 400)
    wait_for(lambda: archived(gbk, MEMBERS[0], last_gtid_seq(gbk, MEMBERS[0])), timeout=60)
    before_leave = rows(gbk, MEMBERS[0])
    systemctl(gbk, MEMBERS[0], "stop", "mariadb")
    insert(gbk, MEMBERS[1], 401, 500)
    wait_for(lambda: archived(gbk, MEMBERS[1], last_gtid_seq(gbk, MEMBERS[1])), timeout=90)
    systemctl(gbk, MEMBERS[0], "start", "mariadb")
    wait_for(lambda: assert_synced(gbk, MEMBERS) is None, timeout=120)
    return {"noted": noted, "before_leave": before_leave, "latest": rows(gbk, MEMBERS[0])}


def test_repository_member_and_consistent_gtids(gbk):
    assert {n: hv["trove_role"] for n, hv in gbk.members().items()} == {
        **dict.fromkeys(MEMBERS, "database"),
        f"{NAME}-repo": "repository",
    }
    host = repo(gbk)
    assert host.check_output("systemctl is-active trove-binlog-archive.service") == "active"
    for kind in ("full", "incr"):
        assert host.check_output(f"systemctl is-active trove-backup-{kind}.timer") == "active"
    sql = (
        "SELECT @@wsrep_gtid_mode AS mode, @@wsrep_gtid_domain_id AS wsrep, @@gtid_domain_id AS own,"
        " @@server_id AS id, @@log_slave_updates AS lsu"
    )
    settings = {m: admin(gbk, m, sql)[0] for m in MEMBERS}
    # One server_id and one Galera GTID domain (0) on every member; a member's own writes (outside
    # Galera) have a domain of their own, distinct on every member.
    assert len({(s["mode"], s["wsrep"], s["lsu"], s["id"]) for s in settings.values()}) == 1
    assert (settings[MEMBERS[0]]["mode"], settings[MEMBERS[0]]["wsrep"], settings[MEMBERS[0]]["lsu"]) == ("1", "0", "1")
    assert len({s["own"] for s in settings.values()} | {"0"}) == 4
    # Every member logged every transaction with the same GTID.
    query(gbk, MEMBERS[2], "CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY)")
    wait_for(lambda: len({binlog_pos(gbk, m) for m in MEMBERS}) == 1, timeout=30)
    assert binlog_pos(gbk, MEMBERS[0]).startswith(f"0-{settings[MEMBERS[0]]['id']}-")
    # ...which is every member's current position (what mariadb-backup records).
    current = {admin(gbk, m, "SELECT @@gtid_current_pos AS pos")[0]["pos"] for m in MEMBERS}
    assert current == {binlog_pos(gbk, MEMBERS[0])}


def test_full_and_incremental_backups_from_a_synced_member(gbk, history):
    taken = backups(gbk)
    assert [b["type"] for b in taken] == ["full", "incr"]
    # Not from the member the endpoint points at (member 0) while another is Synced.
    assert {b["member"] for b in taken} == {MEMBERS[1]}
    assert taken[1]["parent"] == taken[0]["label"]
    assert all(b["gtid"].startswith("0-") for b in taken), taken
    # --galera-info: the backup records the cluster position it holds.
    info = repo(gbk).check_output(f"cat /srv/data/backup/base/{taken[0]['label']}/xtrabackup_galera_info")
    uuid = admin(gbk, MEMBERS[0], "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'")[0]["Value"]
    assert info.startswith(uuid + ":"), info


def test_archive_resumes_on_another_member_without_a_gap(gbk, history):
    found = archived_gtids(gbk)
    assert set(found) == {MEMBERS[0], MEMBERS[1]}, found.keys()
    # Everything from the full backup on is in the archive, with no sequence number missing across
    # the two members' files.
    start = int(backups(gbk)[0]["gtid"].split("-")[2])
    seqs = sorted({s for member in found.values() for s in member if s > start})
    assert seqs == list(range(start + 1, last_gtid_seq(gbk, MEMBERS[0]) + 1)), (start, seqs[:5], seqs[-5:])
    # The member that took over had what the one that left never sent.
    assert max(found[MEMBERS[1]]) > max(found[MEMBERS[0]])
    assert history["latest"][:2] == (500, 500)


def test_restore_to_a_point_in_time_into_a_new_galera_cluster(gbk, history, tmp_path_factory, request):
    target = restore_target(request, tmp_path_factory, gbk, "mariadb-galera.yml", "e2e-gbk-r1")
    started = time.monotonic()
    run = target.playbook("restore", "-e", f"source={NAME}", "-e", f"target_time='{history['noted']}'")
    assert_ok(run)
    print(f"restore to a point in time into galera (3 members): {time.monotonic() - started:.0f} s")
    assert f"target {history['noted']}" in said(run)
    assert "300 rows" in said(run)
    members = [f"e2e-gbk-r1-{i}" for i in range(3)]
    # One bootstrap (on the restored member); the others joined it by state transfer.
    assert "galera: no bootstrap: a primary component runs on e2e-gbk-r1-0" in said(run)
    assert_synced(target, members)
    restored = {m: rows(target, m) for m in members}
    assert len(set(restored.values())) == 1, restored
    assert restored[members[0]][:2] == (300, 300)
    # The same rows as the source had then.
    assert restored[members[0]] == rows(gbk, MEMBERS[0], upto=300)
    # New writes on any member reach the others; GTIDs continue the source's.
    insert(target, members[2], 1001, 1010)
    wait_for(lambda: rows(target, members[0])[:2] == (310, 1010), timeout=30)
    assert last_gtid_seq(target, members[1]) > int(backups(gbk)[-1]["gtid"].split("-")[2])


def test_restore_latest_into_a_standalone_cluster(gbk, history, tmp_path_factory, request):
    target = restore_target(
        request, tmp_path_factory, gbk, "mariadb-replicated.yml", "e2e-gbk-r2", topology="standalone", members=1
    )
    run = target.playbook("restore", "-e", f"source={NAME}")
    assert_ok(run)
    assert "target latest" in said(run)
    # Every row, including those archived from the member that took over.
    assert rows(target, "e2e-gbk-r2-0") == history["latest"]
    assert query(target, "e2e-gbk-r2-0", "SELECT @@read_only, @@wsrep_on")[0] == (0, 0)


def test_rotate_credentials(gbk):
    old = gbk.password("app")
    old_replicator = gbk.password("replicator")
    assert_ok(gbk.playbook("rotate_credentials"))
    assert gbk.password("app") != old and gbk.password("replicator") != old_replicator
    for member in MEMBERS:
        assert query(gbk, member, "SELECT 1") == ((1,),)
        with pytest.raises(pymysql.err.OperationalError) as refused:
            pymysql.connect(
                host=address(gbk, member), port=3306, user="app", password=old,
                ssl={"ca": str(gbk.ca_file)}, connect_timeout=5,
            )  # fmt: skip
        assert refused.value.args[0] == 1045
    assert_synced(gbk, MEMBERS)
    # Writes go on, and the binary log archive reads them with the new replication password.
    insert(gbk, MEMBERS[2], 2001, 2010)
    last = last_gtid_seq(gbk, MEMBERS[2])
    wait_for(lambda: any(last in seqs for seqs in archived_gtids(gbk).values()), timeout=60)


def test_rotate_tls(gbk):
    before = {m: served_serial(gbk, m, starttls="mysql", port=3306) for m in MEMBERS}
    peer_before = {m: peer_serial(gbk, m) for m in MEMBERS}
    assert_ok(gbk.playbook("rotate_tls"))
    after = {m: served_serial(gbk, m, starttls="mysql", port=3306) for m in MEMBERS}
    assert all(after[m] != before[m] for m in MEMBERS), (before, after)
    # Group communication presents the new certificate too (checked against the cluster CA).
    peer_after = {m: peer_serial(gbk, m) for m in MEMBERS}
    assert all(peer_after[m] != peer_before[m] for m in MEMBERS), (peer_before, peer_after)
    assert peer_after == after
    assert_synced(gbk, MEMBERS)
    insert(gbk, MEMBERS[1], 3001, 3010)
    assert rows(gbk, MEMBERS[0])[:2] == (520, 3010)


def peer_serial(cluster: Cluster, member: str) -> str:
    """Serial of the certificate a member presents on the Galera port (4567), verified against the CA."""
    out = subprocess.run(
        f"openssl s_client -connect {address(cluster, member)}:4567 -CAfile {cluster.ca_file} -verify_return_error"
        " </dev/null 2>/dev/null | openssl x509 -noout -serial",
        shell=True, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout.strip()


def test_second_apply_changes_nothing(gbk):
    assert_unchanged(gbk.playbook("cluster_apply"))
