"""MariaDB on real members: GTID replication (semi-synchronous), TLS, grants, switchover, failover,
rolling restarts for static parameters and the rolling minor upgrade, with a client writing throughout.

One 3-member cluster for the module; the tests run in file order and each leaves it healthy for
the next (the failover test ends with an apply that brings the killed primary back).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pymysql
import pytest
import yaml
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, older_release, wait_for
from test_postgresql import address, served_serial

pytestmark = pytest.mark.mariadb
NAME = "e2e-maria"


@pytest.fixture(scope="module")
def mdb(tmp_path_factory):
    spec = {"replication": {"mode": "sync"}, "parameters": {"long_query_time": 2}}
    cluster = applied_cluster(tmp_path_factory, "mariadb-replicated.yml", NAME, **spec)
    query(cluster, primary_of(cluster), "CREATE TABLE IF NOT EXISTS ticks (id bigint PRIMARY KEY)")
    yield cluster
    cluster.purge()


def connect(
    cluster: Cluster, member: str, user: str = "app", tls: bool = True, host: str | None = None, **kw
) -> pymysql.Connection:
    ssl = {"ssl_ca": str(cluster.ca_file), "ssl_verify_cert": True, "ssl_verify_identity": True}
    options = {"connect_timeout": 5, **(ssl if tls else {"ssl_disabled": True}), **kw}
    return pymysql.connect(
        host=host or address(cluster, member),
        port=3306,
        user=user,
        password=cluster.password(user),
        database="appdb",
        autocommit=True,
        **options,
    )


def query(cluster: Cluster, member: str, sql: str, user: str = "app", args=None) -> tuple:
    with connect(cluster, member, user) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def admin(cluster: Cluster, member: str, sql: str) -> list[dict[str, str]]:
    """Run SQL as root on a member (local socket) through SSH; rows as dicts."""
    key = cluster.home / "ssh" / "id_ed25519"
    out = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", f"root@{address(cluster, member)}", "mariadb", "-B", "-e", f'"{sql}"'],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.splitlines()  # fmt: skip
    return [dict(zip(out[0].split("\t"), line.split("\t"), strict=True)) for line in out[1:]] if out else []


def replica_status(cluster: Cluster, member: str) -> dict[str, str]:
    rows = admin(cluster, member, "SHOW SLAVE STATUS")
    return rows[0] if rows else {}


def assert_replicates_from(cluster: Cluster, member: str, primary: str) -> None:
    status = replica_status(cluster, member)
    running = (status["Master_Host"], status["Slave_IO_Running"], status["Slave_SQL_Running"])
    assert running == (primary, "Yes", "Yes"), status


def roles(cluster: Cluster) -> dict[str, str]:
    return {
        name: ("replica" if query(cluster, name, "SELECT @@read_only")[0][0] else "primary")
        for name in cluster.members()
    }


def primary_of(cluster: Cluster) -> str:
    return next(name for name, role in roles(cluster).items() if role == "primary")


def gtid(cluster: Cluster, member: str) -> str:
    return admin(cluster, member, "SELECT @@gtid_current_pos AS pos")[0]["pos"]


def wait_equal_gtids(cluster: Cluster, members: list[str], timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        positions = {m: gtid(cluster, m) for m in members}
        if len(set(positions.values())) == 1 or time.monotonic() > deadline:
            return positions
        time.sleep(0.5)


def test_one_primary_and_two_replicas_over_verified_tls(mdb):
    assert sorted(mdb.members()) == [f"{NAME}-0", f"{NAME}-1", f"{NAME}-2"]
    assert roles(mdb) == {f"{NAME}-0": "primary", f"{NAME}-1": "replica", f"{NAME}-2": "replica"}
    for replica in (f"{NAME}-1", f"{NAME}-2"):
        assert_replicates_from(mdb, replica, f"{NAME}-0")
        status = replica_status(mdb, replica)
        assert (status["Using_Gtid"], status["Master_SSL_Allowed"], status["Master_SSL_Verify_Server_Cert"]) == (
            "Slave_Pos",
            "Yes",
            "Yes",
        )
    semisync = admin(mdb, f"{NAME}-0", "SHOW STATUS LIKE 'Rpl_semi_sync_master_%clients'")
    assert semisync == [{"Variable_name": "Rpl_semi_sync_master_clients", "Value": "2"}]


def test_rows_written_on_the_primary_reach_every_replica_with_equal_gtids(mdb):
    token = uuid.uuid4().hex
    query(mdb, f"{NAME}-0", "CREATE TABLE IF NOT EXISTS e2e (token varchar(64) PRIMARY KEY)")
    query(mdb, f"{NAME}-0", "INSERT INTO e2e VALUES (%s)", args=(token,))
    positions = wait_equal_gtids(mdb, list(mdb.members()))
    assert len(set(positions.values())) == 1, positions
    for replica in (f"{NAME}-1", f"{NAME}-2"):
        assert query(mdb, replica, "SELECT count(*) FROM e2e WHERE token = %s", args=(token,)) == ((1,),)


def test_replicas_refuse_writes(mdb):
    with pytest.raises(pymysql.err.MySQLError) as refused:
        query(mdb, f"{NAME}-1", "INSERT INTO ticks VALUES (-1)")
    assert refused.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only


def test_connections_without_tls_are_refused(mdb):
    with pytest.raises(pymysql.err.MySQLError) as refused:
        connect(mdb, f"{NAME}-0", tls=False).cursor().execute("SELECT 1")
    # require_secure_transport: MariaDB answers a plain-text login with "access denied"; the same
    # credentials work over TLS.
    assert refused.value.args[0] == 1045
    cipher = query(mdb, f"{NAME}-0", "SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0][1]
    assert cipher


def test_grants_follow_the_spec(mdb):
    query(mdb, f"{NAME}-0", "CREATE TABLE IF NOT EXISTS ro_check (id int)")
    wait_equal_gtids(mdb, list(mdb.members()))
    assert query(mdb, f"{NAME}-1", "SELECT count(*) FROM ro_check", user="reporting") == ((0,),)
    with pytest.raises(pymysql.err.MySQLError) as denied:
        query(mdb, f"{NAME}-0", "INSERT INTO ro_check VALUES (1)", user="reporting")
    assert denied.value.args[0] == 1142  # command denied
    with pytest.raises(pymysql.err.MySQLError) as denied:
        query(mdb, f"{NAME}-0", "SELECT user FROM mysql.user", user="app")
    assert denied.value.args[0] == 1142
    with pytest.raises(pymysql.err.MySQLError) as denied:
        query(mdb, f"{NAME}-0", "CREATE DATABASE other", user="app")
    assert denied.value.args[0] == 1044  # access denied to database


def test_second_apply_changes_nothing(mdb):
    run = mdb.playbook("cluster_apply")
    assert_ok(run)
    recap = run.recap()
    assert set(recap) >= {"localhost", *mdb.members()}
    assert {host: c["changed"] for host, c in recap.items() if c["changed"]} == {}
    assert f"mariadb://app@{address(mdb, f'{NAME}-0')}:3306/appdb?ssl-mode=VERIFY_IDENTITY" in run.output


def test_status_shows_roles_and_replication(mdb):
    run = mdb.playbook("cluster_status")
    assert_ok(run)
    lines = [line for line in run.output.splitlines() if f"{NAME}-" in line and ":3306" in line]
    cells = sorted(line.strip(" -").split()[1:4] for line in lines)
    assert cells == [["primary", "running", "0"], ["replica", "streaming", "0"], ["replica", "streaming", "0"]]


def test_a_restarted_primary_takes_no_writes_until_cluster_apply(mdb):
    primary = f"{NAME}-0"
    podman_exec(primary, "pkill", "-9", "-x", "mariadbd")
    # systemd starts it again; every replicated member starts read-only, the primary too.
    wait_for(lambda: admin(mdb, primary, "SELECT @@read_only AS ro")[0]["ro"] == "1", 60)
    with pytest.raises(pymysql.err.MySQLError) as refused:
        query(mdb, primary, "INSERT INTO ticks VALUES (-2)")
    assert refused.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only
    sick = mdb.playbook("cluster_health")
    assert sick.rc != 0
    assert f"{primary}: refuses writes (read_only is on) as the primary" in sick.output
    assert_ok(mdb.playbook("cluster_apply"))
    query(mdb, primary, "INSERT INTO ticks VALUES (-2)")
    for replica in (f"{NAME}-1", f"{NAME}-2"):
        assert_replicates_from(mdb, replica, primary)
    assert wait_equal_gtids(mdb, list(mdb.members())) and missing_on(mdb, f"{NAME}-2", [-2]) == []


def uptime(cluster: Cluster) -> dict[str, int]:
    return {m: int(admin(cluster, m, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0]["Value"]) for m in cluster.members()}


def test_dynamic_parameter_changes_without_restart(mdb, tmp_path):
    document = yaml.safe_load(mdb.spec_file.read_text())
    document["spec"]["parameters"]["long_query_time"] = 3
    changed = tmp_path / "params.yml"
    changed.write_text(yaml.safe_dump(document))
    before = uptime(mdb)
    assert_ok(mdb.playbook("cluster_apply", spec_file=changed))
    after = uptime(mdb)
    assert all(after[m] >= before[m] for m in before), (before, after)
    for member in mdb.members():
        assert admin(mdb, member, "SELECT @@global.long_query_time AS v") == [{"v": "3.000000"}]
    mdb.spec_file.write_text(yaml.safe_dump(document))


def test_unknown_parameter_is_refused_by_name(mdb, tmp_path):
    document = yaml.safe_load(mdb.spec_file.read_text())
    document["spec"]["parameters"]["no_such_setting"] = 1
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(document))
    run = mdb.playbook("cluster_apply", spec_file=bad)
    assert run.rc != 0
    assert "spec.parameters: no_such_setting unknown to MariaDB 10.11" in run.output


def test_rotate_tls_without_restart_or_errant_transactions(mdb):
    before = {m: served_serial(mdb, m, starttls="mysql", port=3306) for m in mdb.members()}
    started = uptime(mdb)
    replica_binlog = admin(mdb, f"{NAME}-1", "SELECT @@gtid_binlog_pos AS pos")
    assert_ok(mdb.playbook("rotate_tls"))
    after = {m: served_serial(mdb, m, starttls="mysql", port=3306) for m in mdb.members()}
    assert all(after[m] != before[m] for m in before)
    assert all(uptime(mdb)[m] >= started[m] for m in started)
    # Loading the certificates wrote nothing to a replica's own binary log.
    assert admin(mdb, f"{NAME}-1", "SELECT @@gtid_binlog_pos AS pos") == replica_binlog
    admin(mdb, f"{NAME}-1", "STOP SLAVE; START SLAVE")  # reconnect: verifies the primary's new certificate
    time.sleep(3)
    assert_replicates_from(mdb, f"{NAME}-1", f"{NAME}-0")


class Writer(threading.Thread):
    """Commits one row every 10 ms on whichever member accepts writes; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster, start: int):
        super().__init__(daemon=True)
        self.cluster, self.next_id, self.acked, self.times = cluster, start, [], []
        # Read once: the inventory (podman ps) may fail while a member is being killed.
        self.addresses = {member: address(cluster, member) for member in cluster.members()}
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def _writable(self) -> pymysql.Connection | None:
        for member, host in self.addresses.items():
            try:
                conn = connect(self.cluster, member, host=host, connect_timeout=1, read_timeout=5, write_timeout=5)
            except pymysql.err.Error:
                continue
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
                if cur.fetchone()[0] == 0:
                    return conn
            conn.close()
        return None

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            try:
                conn = conn or self._writable()
                if conn is not None:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO ticks VALUES (%s)", (self.next_id,))
                    self.acked.append(self.next_id)
                    self.times.append(time.monotonic())
                    self.next_id += 1
            except pymysql.err.Error as error:
                # The row may have committed without an acknowledgement: never reuse its id.
                self.errors.append(f"{time.monotonic():.1f} {error}")
                self.next_id += 1
                conn = None
            time.sleep(0.01)

    def stop(self) -> list[int]:
        self.stopping.set()
        self.join(15)
        return self.acked

    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


def missing_on(cluster: Cluster, member: str, acked: list[int]) -> list[int]:
    rows = query(cluster, member, "SELECT id FROM ticks WHERE id >= %s", args=(min(acked),))
    return sorted(set(acked) - {r[0] for r in rows})


def test_switchover_refuses_an_unknown_target(mdb):
    run = mdb.playbook("switchover", "-e", "target=nobody")
    assert run.rc != 0
    assert f"target: nobody is not a member; members: {NAME}-0, {NAME}-1, {NAME}-2" in run.output
    assert primary_of(mdb) == f"{NAME}-0"


def test_switchover_under_writes_loses_no_acknowledged_commit(mdb):
    writer = Writer(mdb, start=1_000_000)
    writer.start()
    time.sleep(2)
    run = mdb.playbook("switchover", "-e", f"target={NAME}-2")
    switched = time.monotonic()
    time.sleep(3)
    acked = writer.stop()
    assert_ok(run)
    assert primary_of(mdb) == f"{NAME}-2"
    assert len(acked) > 100, "the writer committed too little to tell"
    assert writer.times[-1] > switched, f"no commit acknowledged after the switchover: {writer.errors[-5:]}"
    assert missing_on(mdb, f"{NAME}-2", acked) == []
    print(f"switchover: {len(acked)} commits acknowledged, longest write gap {writer.longest_gap():.2f} s")
    for member in (f"{NAME}-0", f"{NAME}-1"):
        assert_replicates_from(mdb, member, f"{NAME}-2")
    positions = wait_equal_gtids(mdb, list(mdb.members()))
    assert len(set(positions.values())) == 1, positions
    assert missing_on(mdb, f"{NAME}-0", acked) == []


def test_failover_is_refused_while_the_primary_answers(mdb):
    run = mdb.playbook("failover")
    assert run.rc != 0
    assert f"failover refused: the primary {NAME}-2 still answers" in run.output
    assert primary_of(mdb) == f"{NAME}-2"


def podman(*args: str) -> None:
    subprocess.run(["podman", *args], check=True, capture_output=True, timeout=120)


def wait_for_server(cluster: Cluster, member: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin(cluster, member, "SELECT 1 AS up")
            return
        except subprocess.SubprocessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_failover_after_the_primary_is_killed(mdb):
    writer = Writer(mdb, start=2_000_000)
    writer.start()
    time.sleep(2)
    podman("kill", f"{NAME}-2")
    # Semi-synchronous: with a replica down too, the one left may lack an acknowledged commit.
    podman("stop", "-t", "5", f"{NAME}-1")
    refused = mdb.playbook("failover")
    assert refused.rc != 0
    assert (
        f"failover refused: spec.replication.mode is sync (semi-synchronous) and replica(s) {NAME}-1 did not answer"
        in refused.output
    )
    assert replica_status(mdb, f"{NAME}-0")["Master_Host"] == f"{NAME}-2"

    podman("start", f"{NAME}-1")
    wait_for_server(mdb, f"{NAME}-1")
    run = mdb.playbook("failover")
    assert_ok(run)
    time.sleep(2)
    acked = writer.stop()
    new = primary_of_running(mdb)
    assert missing_on(mdb, new, acked) == []
    other = ({f"{NAME}-0", f"{NAME}-1"} - {new}).pop()
    assert_replicates_from(mdb, other, new)
    query(mdb, new, "INSERT INTO ticks VALUES (%s)", args=(3_000_000,))
    assert wait_equal_gtids(mdb, [new, other]) and missing_on(mdb, other, [3_000_000]) == []


def test_apply_brings_the_killed_primary_back_as_a_replica(mdb):
    new = primary_of_running(mdb)
    podman("start", f"{NAME}-2")
    wait_for_server(mdb, f"{NAME}-2")
    # Back after a failover chose another primary: fenced until the apply makes it a replica.
    assert admin(mdb, f"{NAME}-2", "SELECT @@read_only AS ro") == [{"ro": "1"}]
    assert_ok(mdb.playbook("cluster_apply"))
    assert_replicates_from(mdb, f"{NAME}-2", new)
    assert query(mdb, f"{NAME}-2", "SELECT @@read_only") == ((1,),)
    positions = wait_equal_gtids(mdb, list(mdb.members()))
    assert len(set(positions.values())) == 1, positions
    assert missing_on(mdb, f"{NAME}-2", [3_000_000]) == []


def test_member_replace_retires_a_diverged_replica_without_converging_it(mdb):
    primary = primary_of(mdb)
    diverged, other = sorted(m for m in mdb.members() if m != primary)
    # A commit only this replica has (root may write despite read_only); its replication stops at
    # the primary's next commit (gtid_strict_mode), and converging it would refuse it.
    admin(mdb, diverged, "INSERT INTO appdb.ticks VALUES (-3)")
    query(mdb, primary, "INSERT INTO ticks VALUES (-4)")
    wait_for(lambda: replica_status(mdb, diverged)["Slave_SQL_Running"] == "No", 30)
    assert_ok(mdb.playbook("member_replace", "-e", f"member={diverged}"))
    members = sorted(mdb.members())
    (new,) = set(members) - {primary, other}
    assert diverged not in members and primary_of(mdb) == primary
    assert_replicates_from(mdb, new, primary)
    positions = wait_equal_gtids(mdb, members)
    assert len(set(positions.values())) == 1, positions
    assert missing_on(mdb, new, [-4]) == [] and query(mdb, new, "SELECT id FROM ticks WHERE id = -3") == ()


def primary_of_running(cluster: Cluster) -> str:
    for member in (f"{NAME}-0", f"{NAME}-1"):
        if query(cluster, member, "SELECT @@read_only") == ((0,),):
            return member
    raise AssertionError("no running member accepts writes")


def podman_exec(member: str, *argv: str) -> str:
    return subprocess.run(
        ["podman", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", member, *argv],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip


def clock(member: str) -> int:
    """The next whole second on the members' clock: what the journal shows from it on happened after now."""
    return int(podman_exec(member, "date", "+%s")) + 1


def starts_since(member: str, since: int) -> int:
    """How often systemd started the member's server since `since` (epoch seconds)."""
    journal = podman_exec(member, "journalctl", "-u", "mariadb", "--since", f"@{since}", "--no-pager", "-o", "cat")
    return len(re.findall(r"^Started mariadb\.service", journal, re.MULTILINE))


def server_version(cluster: Cluster, member: str) -> str:
    return admin(cluster, member, "SELECT @@version AS v")[0]["v"]


def binary_version(member: str) -> str:
    return re.search(r"Ver (\S+)", podman_exec(member, "mariadbd", "--version"))[1]


def package_version(member: str) -> str:
    return podman_exec(member, "dpkg-query", "--show", "--showformat=${Version}", "mariadb-server")


POLICY = "/usr/sbin/policy-rc.d"  # exit 101: package scripts may not start or stop services


def install_older(member: str, newest: str, older: str) -> None:
    """Every package of the newest release on the member goes back to the older one, with the
    package scripts kept from restarting the server (as the upgrade does)."""
    podman_exec(member, "apt-get", "update", "-qq")
    listed = podman_exec(member, "dpkg-query", "--show", "--showformat=${Package} ${Version}\\n").splitlines()
    packages = [line.split()[0] for line in listed if line.split()[1:] == [newest]]
    podman_exec(member, "sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY}; chmod 755 {POLICY}")
    try:
        podman_exec(
            member,
            *("apt-get", "install", "-y", "-qq", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confold"),
            *(f"{p}={older}" for p in packages),
        )
    finally:
        podman_exec(member, "rm", "-f", POLICY)


def downgrade(cluster: Cluster, members: list[str], settled) -> tuple[str, str]:
    """Every member on the older Debian release of MariaDB (installed on all members at once),
    restarted on it one at a time, each settled(member) before the next: (older, newest). Skips
    when the Debian archive offers a single release."""
    newest, older = older_release(podman_exec, members[0], "mariadb-server")
    with ThreadPoolExecutor(len(members)) as pool:
        list(pool.map(lambda m: install_older(m, newest, older), members))
    for member in members:
        podman_exec(member, "systemctl", "restart", "mariadb")
        wait_for(lambda m=member: settled(m), timeout=120)
    for member in members:
        assert package_version(member) == older
        assert server_version(cluster, member) == binary_version(member) != ""
    return older, newest


def assert_upgraded(cluster: Cluster, members: list[str], run_output: str, newest: str, since: int) -> None:
    """Every member on the newest package, its server restarted exactly once and running the installed binary."""
    for member in members:
        assert package_version(member) == newest, member
        running = server_version(cluster, member)
        assert running == binary_version(member), member
        assert re.match(r"(?:\d+:)?([^-]+)", newest)[1] in running, (newest, running)
        assert f"{member}: {running}" in " ".join(run_output.split())
    assert {m: starts_since(m, since) for m in members} == dict.fromkeys(members, 1)


def replicating(cluster: Cluster, member: str) -> bool:
    """A primary that answers, or a replica whose replication threads both run."""
    status = replica_status(cluster, member)
    return not status or (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")


def under_writes(cluster: Cluster, start: int, *playbook: str, **kw):
    writer = Writer(cluster, start=start)
    writer.start()
    time.sleep(2)
    run = cluster.playbook(*playbook, **kw)
    time.sleep(2)
    acked = writer.stop()
    assert len(acked) > 100, "the writer committed too little to tell"
    print(f"{playbook[0]}: {len(acked)} commits acknowledged, longest write gap {writer.longest_gap():.2f} s")
    return run, acked


def assert_replicated_whole(cluster: Cluster, old_primary: str, acked: list[int]) -> str:
    """The primary moved off old_primary by a switchover; every member has every acknowledged
    commit, the replicas replicate from the new primary and all GTIDs are equal: the new primary."""
    members = sorted(cluster.members())
    primary = primary_of(cluster)
    assert primary != old_primary
    for member in members:
        if member != primary:
            wait_for(lambda m=member: replicating(cluster, m), timeout=30)
            assert_replicates_from(cluster, member, primary)
    positions = wait_equal_gtids(cluster, members)
    assert len(set(positions.values())) == 1, positions
    for member in members:
        assert missing_on(cluster, member, acked) == [], member
    return primary


# innodb_log_buffer_size cannot change while the server runs in 10.11 (information_schema
# SYSTEM_VARIABLES READ_ONLY = YES): only a restart applies it.
def test_static_parameter_restarts_each_member_once_replicas_first(mdb, tmp_path):
    members = sorted(mdb.members())
    static = admin(mdb, members[0], "SELECT READ_ONLY AS ro FROM information_schema.SYSTEM_VARIABLES"
                   " WHERE VARIABLE_NAME = 'INNODB_LOG_BUFFER_SIZE'")  # fmt: skip
    assert static == [{"ro": "YES"}]
    document = yaml.safe_load(mdb.spec_file.read_text())
    document["spec"]["parameters"]["innodb_log_buffer_size"] = 32 * 1024 * 1024
    mdb.spec_file.write_text(yaml.safe_dump(document))
    old_primary = primary_of(mdb)
    since = clock(members[0])
    run, acked = under_writes(mdb, 6_000_000, "cluster_apply")
    assert_ok(run)
    for member in members:
        assert admin(mdb, member, "SELECT @@innodb_log_buffer_size AS v") == [{"v": str(32 * 1024 * 1024)}]
    assert {m: starts_since(m, since) for m in members} == dict.fromkeys(members, 1)
    assert_replicated_whole(mdb, old_primary, acked)
    assert_unchanged(mdb.playbook("cluster_apply"))


@pytest.mark.slow
def test_upgrade_restarts_the_replicas_then_the_primary_after_a_switchover(mdb):
    members = sorted(mdb.members())
    _, newest = downgrade(mdb, members, lambda m: replicating(mdb, m))
    # Restarted outside the playbooks, the primary is read-only (fenced) until a playbook makes it writable:
    # it is the member that replicates from nobody.
    old_primary = next(m for m in members if not replica_status(mdb, m))
    assert query(mdb, old_primary, "SELECT @@read_only") == ((1,),)
    since = clock(members[0])
    run, acked = under_writes(mdb, 7_000_000, "upgrade")
    assert_ok(run)
    assert_upgraded(mdb, members, run.output, newest, since)
    # The primary role moved: the old primary handed it over and restarted as a replica.
    assert_replicated_whole(mdb, old_primary, acked)
    again = mdb.playbook("upgrade")
    assert_unchanged(again)
    assert f"{members[0]}: {server_version(mdb, members[0])}" in again.output
