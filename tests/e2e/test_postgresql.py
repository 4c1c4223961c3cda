"""PostgreSQL on real members: replication, TLS, users, parameters, idempotence, delete."""

from __future__ import annotations

import subprocess
import time
import uuid

import psycopg2
import pytest
import testinfra
import yaml
from conftest import ROOT, Cluster, assert_ok, assert_unchanged, make_cluster, wait_for

pytestmark = pytest.mark.postgresql


def connect(cluster: Cluster, address: str, user: str = "app", sslmode: str = "verify-full", **kw):
    return psycopg2.connect(
        host=address,
        port=5432,
        dbname="appdb",
        user=user,
        password=cluster.password(user),
        sslmode=sslmode,
        sslrootcert=str(cluster.ca_file),
        connect_timeout=5,
        **kw,
    )


def query(cluster: Cluster, address: str, sql: str, user: str = "app"):
    with connect(cluster, address, user) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description else None


def member_host(cluster: Cluster, name: str):
    """testinfra host for a member, over SSH with the controller key."""
    return testinfra.get_host(
        f"ssh://root@{address(cluster, name)}",
        ssh_identity_file=str(cluster.home / "ssh" / "id_ed25519"),
        ssh_extra_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    )


def admin_query(cluster: Cluster, name: str, sql: str) -> list[list[str]]:
    """Run SQL as the postgres superuser on a member (local socket, peer authentication)."""
    out = member_host(cluster, name).check_output("runuser -u postgres -- psql -XAt -F '|' -c %s", sql)
    return [line.split("|") for line in out.splitlines() if line]


def roles(cluster: Cluster) -> dict[str, str]:
    members = cluster.members()
    return {
        name: ("replica" if query(cluster, hv["ansible_host"], "SELECT pg_is_in_recovery()")[0][0] else "primary")
        for name, hv in members.items()
    }


def address(cluster: Cluster, name: str) -> str:
    return cluster.members()[name]["ansible_host"]


def primary_of(cluster: Cluster) -> str:
    return next(name for name, role in roles(cluster).items() if role == "primary")


def test_inventory_plugin_finds_every_member(pg_cluster):
    members = pg_cluster.members()
    assert sorted(members) == ["e2e-pg-0", "e2e-pg-1", "e2e-pg-2"]
    assert {hv["trove_engine"] for hv in members.values()} == {"postgresql"}
    assert {hv["trove_state"] for hv in members.values()} == {"running"}
    assert len({hv["ansible_host"] for hv in members.values()}) == 3


def test_one_primary_and_two_streaming_replicas(pg_cluster):
    assert sorted(roles(pg_cluster).values()) == ["primary", "replica", "replica"]
    rows = admin_query(
        pg_cluster, primary_of(pg_cluster), "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
    )
    assert rows == [["e2e-pg-1", "streaming"], ["e2e-pg-2", "streaming"]]


def test_row_written_on_primary_is_read_on_every_replica(pg_cluster):
    token = uuid.uuid4().hex
    dsn_hosts = ",".join(hv["ansible_host"] for hv in pg_cluster.members().values())
    with connect(pg_cluster, dsn_hosts, target_session_attrs="read-write") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS e2e (token text PRIMARY KEY)")
        cur.execute("INSERT INTO e2e VALUES (%s)", (token,))
    replicas = [n for n, r in roles(pg_cluster).items() if r == "replica"]
    for name in replicas:
        deadline = time.monotonic() + 15
        while True:
            rows = query(pg_cluster, address(pg_cluster, name), f"SELECT count(*) FROM e2e WHERE token = '{token}'")
            if rows[0][0] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rows[0][0] == 1, f"{name} never received the row"


def test_connection_without_tls_is_refused(pg_cluster):
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        connect(pg_cluster, address(pg_cluster, "e2e-pg-1"), sslmode="disable")


def test_connections_use_tls_and_data_has_checksums(pg_cluster):
    primary = address(pg_cluster, primary_of(pg_cluster))
    assert query(pg_cluster, primary, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
    assert query(pg_cluster, primary, "SHOW data_checksums") == [("on",)]


def test_readonly_user_reads_but_cannot_write(pg_cluster):
    primary = address(pg_cluster, primary_of(pg_cluster))
    query(pg_cluster, primary, "CREATE TABLE IF NOT EXISTS ro_check (id int)")
    assert query(pg_cluster, primary, "SELECT count(*) FROM ro_check", user="reporting") == [(0,)]
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(pg_cluster, primary, "INSERT INTO ro_check VALUES (1)", user="reporting")


def test_second_apply_changes_nothing(pg_cluster):
    run = pg_cluster.playbook("cluster_apply")
    assert_ok(run)
    recap = run.recap()
    assert set(recap) >= {"localhost", "e2e-pg-0", "e2e-pg-1", "e2e-pg-2"}
    assert {host: c["changed"] for host, c in recap.items() if c["changed"]} == {}


def test_apply_prints_the_multi_host_dsn(pg_cluster):
    hosts = ",".join(f"{hv['ansible_host']}:5432" for hv in pg_cluster.members().values())
    assert f"postgresql://app@{hosts}/appdb?target_session_attrs=read-write" in pg_cluster.created.output


def test_status_shows_roles_and_lag(pg_cluster):
    run = pg_cluster.playbook("cluster_status")
    assert_ok(run)
    lines = [line for line in run.output.splitlines() if "e2e-pg-" in line and ":5432" in line]
    assert len(lines) == 3
    cells = sorted(line.strip(" -").split()[1:3] for line in lines)
    assert cells == [["primary", "running"], ["replica", "streaming"], ["replica", "streaming"]]


def test_health_names_a_stopped_server_and_passes_again_once_it_is_back(pg_cluster):
    healthy = pg_cluster.playbook("cluster_health")
    assert_unchanged(healthy)
    assert "e2e-pg is healthy" in healthy.output
    replica = next(name for name, role in roles(pg_cluster).items() if role == "replica")
    host = member_host(pg_cluster, replica)
    host.check_output("systemctl stop postgresql@15-main")
    try:
        sick = pg_cluster.playbook("cluster_health")
        assert sick.rc != 0
        assert "e2e-pg is not healthy" in sick.output
        assert f"{replica}: PostgreSQL does not answer" in sick.output
    finally:
        host.check_output("systemctl start postgresql@15-main")
    wait_for(lambda: pg_cluster.playbook("cluster_health").rc == 0, 120, lambda: pg_cluster.runs[-1].output[-3000:])


def test_secrets_are_private_and_never_printed(pg_cluster):
    secrets = pg_cluster.home / "secrets" / pg_cluster.name
    files = [*(secrets / "credentials").iterdir(), secrets / "tls" / "ca.key"]
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}
    passwords = [pg_cluster.password(f.stem) for f in (secrets / "credentials").iterdir()]
    for run in pg_cluster.runs:
        for password in passwords:
            assert password not in run.output


def test_members_have_their_own_identity(pg_cluster):
    seen = {"machine-id": set(), "host key": set()}
    for name in pg_cluster.members():
        host = member_host(pg_cluster, name)
        seen["machine-id"].add(host.file("/etc/machine-id").content_string.strip())
        seen["host key"].add(host.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[1])
        assert host.service("ssh").is_running
    assert {k: len(v) for k, v in seen.items()} == {"machine-id": 3, "host key": 3}


def postmaster_start(cluster: Cluster) -> dict[str, str]:
    return {
        n: query(cluster, hv["ansible_host"], "SELECT pg_postmaster_start_time()::text")[0][0]
        for n, hv in cluster.members().items()
    }


def test_check_mode_reports_a_change_and_makes_none(pg_cluster, tmp_path):
    document = yaml.safe_load(pg_cluster.spec_file.read_text())
    document["spec"]["parameters"]["work_mem"] = "8MB"
    changed = tmp_path / "check.yml"
    changed.write_text(yaml.safe_dump(document))
    run = pg_cluster.playbook("cluster_apply", "--check", spec_file=changed)
    assert_ok(run)
    assert all(run.recap()[m]["changed"] > 0 for m in pg_cluster.members())
    primary = address(pg_cluster, primary_of(pg_cluster))
    assert query(pg_cluster, primary, "SHOW work_mem") == [("4MB",)]


def test_parameters_reload_or_restart_by_context(pg_cluster, tmp_path):
    document = yaml.safe_load(pg_cluster.spec_file.read_text())
    before = postmaster_start(pg_cluster)

    document["spec"]["parameters"]["log_min_duration_statement"] = "250ms"  # context: superuser (reload)
    reload_spec = tmp_path / "reload.yml"
    reload_spec.write_text(yaml.safe_dump(document))
    assert_ok(pg_cluster.playbook("cluster_apply", spec_file=reload_spec))
    assert postmaster_start(pg_cluster) == before
    primary = address(pg_cluster, primary_of(pg_cluster))
    assert query(pg_cluster, primary, "SELECT setting FROM pg_settings WHERE name = 'log_min_duration_statement'") == [
        ("250",)
    ]

    document["spec"]["parameters"]["max_connections"] = 120  # context: postmaster (restart)
    restart_spec = tmp_path / "restart.yml"
    restart_spec.write_text(yaml.safe_dump(document))
    assert_ok(pg_cluster.playbook("cluster_apply", spec_file=restart_spec))
    after = postmaster_start(pg_cluster)
    assert all(after[n] != before[n] for n in before)
    assert query(pg_cluster, primary, "SHOW max_connections") == [("120",)]
    pg_cluster.spec_file.write_text(yaml.safe_dump(document))


def test_rotate_credentials_without_restart(pg_cluster):
    refused = pg_cluster.playbook("rotate_credentials", "-e", "users=nobody")
    assert refused.rc != 0 and "users: nobody unknown; allowed: app, replicator, reporting" in refused.output

    started = postmaster_start(pg_cluster)
    old = {u: pg_cluster.password(u) for u in ("app", "replicator", "reporting")}
    assert_ok(pg_cluster.playbook("rotate_credentials"))
    assert all(pg_cluster.password(u) != old[u] for u in old)
    primary = primary_of(pg_cluster)
    assert_password_refused(pg_cluster, primary, "app", old["app"])
    query(pg_cluster, address(pg_cluster, primary), "INSERT INTO e2e VALUES ('after-rotation')")
    # Replicas reconnect with the new replication password (forced here) and keep streaming.
    admin_query(pg_cluster, primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = admin_query(pg_cluster, primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
        if rows == [["2"]]:
            break
        time.sleep(1)
    assert rows == [["2"]]
    assert postmaster_start(pg_cluster) == started


def assert_password_refused(cluster: Cluster, member: str, user: str, password: str) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=address(cluster, member),
            dbname="appdb",
            user=user,
            password=password,
            sslmode="verify-full",
            sslrootcert=str(cluster.ca_file),
            connect_timeout=5,
        )


def served_serial(cluster: Cluster, member: str, starttls: str | None = "postgres", port: int = 5432) -> str:
    """Serial of the certificate a member's service presents, read over the wire (openssl s_client;
    starttls None for a service that speaks TLS from the first byte)."""
    upgrade = f"-starttls {starttls} " if starttls else ""
    out = subprocess.run(
        f"openssl s_client {upgrade}-connect {address(cluster, member)}:{port} -CAfile {cluster.ca_file}"
        " -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_rotate_tls_serves_new_certificates_without_restart(pg_cluster):
    started = postmaster_start(pg_cluster)
    before = {m: served_serial(pg_cluster, m) for m in pg_cluster.members()}
    assert_ok(pg_cluster.playbook("rotate_tls"))
    after = {m: served_serial(pg_cluster, m) for m in pg_cluster.members()}
    assert all(after[m] != before[m] for m in before)
    assert postmaster_start(pg_cluster) == started
    assert query(pg_cluster, address(pg_cluster, primary_of(pg_cluster)), "SELECT 1") == [(1,)]


def test_invalid_spec_is_refused_before_any_change(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory, "postgresql-replicated.yml", "e2e-bad", members=0)
    run = cluster.playbook("cluster_apply")
    assert run.rc != 0
    assert "spec.members: 0 is less than the minimum of 1" in run.output
    assert cluster.members() == {}


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True, cwd=ROOT).stdout


def test_delete_needs_confirmation_keeps_data_and_purges(pg_cluster):
    refused = pg_cluster.playbook("cluster_delete", "-e", "confirm=wrong")
    assert refused.rc != 0 and f"confirm={pg_cluster.name}" in refused.output
    assert len(pg_cluster.members()) == 3

    token = query(pg_cluster, address(pg_cluster, primary_of(pg_cluster)), "SELECT max(token) FROM e2e")[0][0]
    assert_ok(pg_cluster.playbook("cluster_delete", "-e", f"confirm={pg_cluster.name}"))
    assert pg_cluster.members() == {}
    volumes = podman(
        "volume", "ls", "--format", "{{.Name}}", "--filter", f"label=trove.dbaas/cluster={pg_cluster.name}"
    )
    assert sorted(volumes.split()) == ["e2e-pg-0-data", "e2e-pg-1-data", "e2e-pg-2-data"]

    # The kept volumes bring the data back with the members.
    assert_ok(pg_cluster.playbook("cluster_apply"))
    assert query(pg_cluster, address(pg_cluster, primary_of(pg_cluster)), "SELECT max(token) FROM e2e")[0][0] == token

    assert_ok(pg_cluster.playbook("cluster_delete", "-e", f"confirm={pg_cluster.name}", "-e", "purge=true"))
    assert pg_cluster.members() == {}
    volumes = podman(
        "volume", "ls", "--format", "{{.Name}}", "--filter", f"label=trove.dbaas/cluster={pg_cluster.name}"
    )
    assert volumes.split() == []
