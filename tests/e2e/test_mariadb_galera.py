"""MariaDB Galera on real members: wsrep over TLS, writes on any member, safe bootstrap after a full stop,
the rolling minor upgrade (one member at a time, each synced again) under writes.

One 3-member cluster for the module; the tests run in file order and each leaves it healthy (3
synced members) for the next.
"""

from __future__ import annotations

import subprocess
import uuid

import pymysql
import pytest
import yaml
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, wait_for
from test_mariadb import (
    admin,
    assert_upgraded,
    clock,
    connect,
    downgrade,
    missing_on,
    podman,
    query,
    under_writes,
)
from test_postgresql import address

pytestmark = pytest.mark.mariadb
NAME = "e2e-galera"
MEMBERS = [f"{NAME}-0", f"{NAME}-1", f"{NAME}-2"]


@pytest.fixture(scope="module")
def gal(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "mariadb-galera.yml", NAME, parameters={"long_query_time": 2})
    table = "CREATE TABLE IF NOT EXISTS rows_e2e (token varchar(64) PRIMARY KEY, member varchar(64))"
    query(cluster, MEMBERS[0], table)
    yield cluster
    cluster.purge()


def flat(output: str) -> str:
    """Playbook output with the callback's line wrapping undone."""
    return " ".join(output.split())


def wsrep(cluster: Cluster, member: str) -> dict[str, str]:
    rows = admin(cluster, member, "SHOW GLOBAL STATUS LIKE 'wsrep_%'")
    return {row["Variable_name"]: row["Value"] for row in rows}


def cluster_state(cluster: Cluster, members: list[str]) -> dict[str, tuple[str, str, str]]:
    out = {}
    for member in members:
        status = wsrep(cluster, member)
        out[member] = (
            status["wsrep_cluster_size"],
            status["wsrep_local_state_comment"],
            status["wsrep_cluster_status"],
        )
    return out


def assert_synced(cluster: Cluster, members: list[str]) -> None:
    size = str(len(members))
    assert cluster_state(cluster, members) == dict.fromkeys(members, (size, "Synced", "Primary"))


def write_rows(cluster: Cluster, member: str, count: int = 1) -> list[str]:
    tokens = [uuid.uuid4().hex for _ in range(count)]
    with connect(cluster, member) as conn, conn.cursor() as cur:
        for token in tokens:
            cur.execute("INSERT INTO rows_e2e VALUES (%s, %s)", (token, member))
    return tokens


def missing(cluster: Cluster, member: str, tokens: list[str]) -> list[str]:
    rows = query(cluster, member, "SELECT token FROM rows_e2e")
    return sorted(set(tokens) - {r[0] for r in rows})


def test_three_members_synced_in_one_primary_component(gal):
    assert sorted(gal.members()) == MEMBERS
    assert_synced(gal, MEMBERS)
    uuids = {wsrep(gal, m)["wsrep_cluster_state_uuid"] for m in MEMBERS}
    assert len(uuids) == 1


def test_rows_written_on_any_member_are_read_on_all(gal):
    written = [token for member in MEMBERS for token in write_rows(gal, member)]
    # Galera certifies a commit on every member before it returns; wsrep_sync_wait makes a read
    # wait until the member has applied everything committed before it.
    for member in MEMBERS:
        with connect(gal, member) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute("SELECT token FROM rows_e2e")
            assert set(written) <= {r[0] for r in cur.fetchall()}


def test_wsrep_runs_over_tls_with_the_cluster_ca(gal):
    options = admin(gal, MEMBERS[0], "SELECT @@wsrep_provider_options AS o")[0]["o"]
    for setting in ("socket.ssl = YES", "socket.ssl_ca = /etc/trove/tls/ca.crt",
                    "socket.ssl_cert = /etc/trove/tls/server.crt", "socket.ssl_key = /etc/trove/tls/server.key",
                    f"gmcast.listen_addr = ssl://{address(gal, MEMBERS[0])}:4567"):  # fmt: skip
        assert setting in options, options
    # Galera's binary frames may follow a handshake: decode with errors="replace".
    # The group communication port presents a certificate the cluster CA signed...
    served = subprocess.run(
        f"openssl s_client -connect {address(gal, MEMBERS[0])}:4567 -CAfile {gal.ca_file} -verify_return_error"
        " </dev/null 2>/dev/null | openssl x509 -noout -subject",
        shell=True, capture_output=True, text=True, errors="replace", check=False, timeout=30,
    )  # fmt: skip
    assert f"CN = {MEMBERS[0]}" in served.stdout, served
    # ...and a peer without a certificate from that CA gets no session: the member requires one.
    plain = subprocess.run(
        f"printf 'x' | openssl s_client -connect {address(gal, MEMBERS[0])}:4567 -CAfile {gal.ca_file} -quiet",
        shell=True, capture_output=True, text=True, errors="replace", check=False, timeout=30,
    )  # fmt: skip
    assert plain.returncode != 0 and "certificate required" in plain.stdout + plain.stderr, plain
    # A member's own certificate and key (signed by the CA) do get a session.
    key = gal.home / "ssh" / "id_ed25519"
    peer = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", f"root@{address(gal, MEMBERS[1])}",
         f"openssl s_client -connect {address(gal, MEMBERS[0])}:4567 -CAfile /etc/trove/tls/ca.crt"
         " -cert /etc/trove/tls/server.crt -key /etc/trove/tls/server.key -verify_return_error </dev/null"],
        capture_output=True, text=True, errors="replace", check=False, timeout=30,
    )  # fmt: skip
    assert "Verify return code: 0 (ok)" in peer.stdout, peer.stdout[-2000:]
    # Full state transfers (mariabackup through socat) are encrypted and verify the peer.
    sst = subprocess.run(
        ["podman", "exec", MEMBERS[0], "grep", "-A4", r"^\[sst\]", "/etc/mysql/mariadb.conf.d/90-trove.cnf"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert "encrypt = 3" in sst and "tca = /etc/trove/tls/ca.crt" in sst


def test_status_shows_wsrep_state(gal):
    run = gal.playbook("cluster_status")
    assert_ok(run)
    out = flat(run.output)
    for member in MEMBERS:
        assert f"{member} galera synced 0 {address(gal, member)}:3306 Primary component, size 3" in out, out[-3000:]


def test_health_passes_with_every_member_synced(gal):
    run = gal.playbook("cluster_health")
    assert_unchanged(run)
    assert f"{NAME} is healthy" in run.output


def test_second_apply_changes_nothing(gal):
    run = gal.playbook("cluster_apply")
    assert_unchanged(run)
    assert "galera: no bootstrap: a primary component runs on" in flat(run.output)


def test_upgrade_restarts_one_member_at_a_time_each_synced_again(gal):
    query(gal, MEMBERS[0], "CREATE TABLE IF NOT EXISTS ticks (id bigint PRIMARY KEY)")
    _, newest = downgrade(gal, MEMBERS, lambda m: cluster_state(gal, MEMBERS)[m] == ("3", "Synced", "Primary"))
    since = clock(MEMBERS[0])
    run, acked = under_writes(gal, 1, "upgrade")
    assert_ok(run)
    assert_upgraded(gal, MEMBERS, run.output, newest, since)
    assert "bootstrap" not in run.output
    assert_synced(gal, MEMBERS)
    for member in MEMBERS:
        wait_for(lambda m=member: missing_on(gal, m, acked) == [], timeout=30)
    assert_unchanged(gal.playbook("upgrade"))


def test_switchover_and_failover_are_refused_naming_the_topology(gal):
    run = gal.playbook("switchover")
    assert run.rc != 0
    assert "switchover refused: topology galera has no primary to move" in flat(run.output)
    run = gal.playbook("failover")
    assert run.rc != 0
    assert "failover refused: topology galera has no primary to replace" in flat(run.output)
    assert_synced(gal, MEMBERS)


def test_full_stop_and_a_crash_bootstrap_from_the_most_advanced_member(gal):
    before = write_rows(gal, MEMBERS[0], 5)
    podman("stop", "-t", "60", MEMBERS[0])
    podman("stop", "-t", "60", MEMBERS[1])
    # The last member keeps a primary component of its own (the others left cleanly) and commits
    # alone: it is now the only one with these rows.
    assert wsrep(gal, MEMBERS[2])["wsrep_cluster_status"] == "Primary"
    later = write_rows(gal, MEMBERS[2], 20)
    # And it crashes: its grastate.dat says seqno -1, its position comes from InnoDB (galera_recovery).
    podman("kill", MEMBERS[2])

    run = gal.playbook("cluster_apply")
    assert_ok(run)
    assert f"galera: bootstrap from {MEMBERS[2]}: no member runs a primary component; {MEMBERS[2]} has the highest" in (
        flat(run.output)
    )
    assert_synced(gal, MEMBERS)
    for member in MEMBERS:
        assert missing(gal, member, before + later) == [], member
    # The bootstrap happened on that member only.
    booted = {m: new_cluster_starts(m) for m in MEMBERS}
    assert booted[MEMBERS[2]] > 0 and booted[MEMBERS[0]] == 0 and booted[MEMBERS[1]] == 0, booted


def new_cluster_starts(member: str) -> int:
    """How often the member bootstrapped a new primary component (--wsrep-new-cluster) since its container booted."""
    journal = subprocess.run(
        ["podman", "exec", member, "journalctl", "-b", "-u", "mariadb", "--no-pager", "-g", "bootstrap option: 1"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return journal.stdout.count("Connecting with bootstrap option: 1")


def test_a_second_apply_after_recovery_does_not_bootstrap_again(gal):
    run = gal.playbook("cluster_apply")
    assert_ok(run)
    assert "galera: no bootstrap" in flat(run.output)
    assert_unchanged(run)


@pytest.mark.slow
def test_scale_to_four_and_back_to_three(gal, tmp_path):
    document = yaml.safe_load(gal.spec_file.read_text())
    document["spec"]["members"] = 4
    four = tmp_path / "four.yml"
    four.write_text(yaml.safe_dump(document))
    assert_ok(gal.playbook("cluster_apply", spec_file=four))
    members = sorted(gal.members())
    assert len(members) == 4
    assert_synced(gal, members)
    new = (set(members) - set(MEMBERS)).pop()
    tokens = write_rows(gal, new, 3)
    for member in members:
        wait_for(lambda member=member: missing(gal, member, tokens) == [], timeout=30)

    assert_ok(gal.playbook("cluster_apply"))
    assert sorted(gal.members()) == MEMBERS
    assert_synced(gal, MEMBERS)
    for member in MEMBERS:
        assert missing(gal, member, tokens) == []


def test_member_replace_joins_a_new_member_by_state_transfer(gal):
    tokens = write_rows(gal, MEMBERS[1], 3)
    run = gal.playbook("member_replace", "-e", f"member={MEMBERS[1]}")
    assert_ok(run)
    members = sorted(gal.members())
    assert MEMBERS[1] not in members and len(members) == 3, members
    assert_synced(gal, members)
    for member in members:
        assert missing(gal, member, tokens) == []
    with pytest.raises(pymysql.err.MySQLError):
        connect(gal, members[0], user="app", tls=False).cursor().execute("SELECT 1")
