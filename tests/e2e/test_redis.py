"""Redis topology sentinel on real members: a primary, two replicas and a Sentinel on every member.

Everything is checked in Redis itself (INFO replication, ACL answers, Sentinel's view, the keys),
through a minimal RESP client over TLS, so the tests need no Redis client library.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
import yaml
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, restore_target, wait_for
from test_postgresql import served_serial

pytestmark = pytest.mark.redis

NAME = "e2e-redis"
MEMBERS = [f"{NAME}-{i}" for i in range(3)]
PORT = 6379
SENTINEL_PORT = 26379
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF="/var/lib/trove-dbaas/containers.conf")


class RespError(Exception):
    """An error reply (-ERR, -NOPERM, -READONLY, ...)."""


class Resp:
    """One RESP2 connection over TLS, verified against `ca` (the system CAs when None)."""

    def __init__(self, host: str, port: int, ca: str | None = None, *, user: str = "", password: str = ""):
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False  # the chain is what is checked here; names are the guest role's business
        self.sock = context.wrap_socket(socket.create_connection((host, port), timeout=5))
        self.buf = b""
        if user:
            self.call("AUTH", user, password)

    def close(self) -> None:
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for arg in args:
            data = str(arg).encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed")
                self.buf += chunk
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data.decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply {line!r}")


def address(cluster: Cluster, member: str) -> str:
    return cluster.members()[member]["ansible_host"]


def connect(cluster: Cluster, host: str, user: str = "admin", port: int = PORT) -> Resp:
    return Resp(host, port, str(cluster.ca_file), user=user, password=cluster.password(user))


def info(cluster: Cluster, host: str, section: str = "replication") -> dict[str, str]:
    conn = connect(cluster, host)
    try:
        text = conn.call("INFO", section)
    finally:
        conn.close()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def members_of(cluster: Cluster) -> list[str]:
    """The cluster's Redis members (not its backup repository), in index order."""
    return sorted((m for m in cluster.members() if not m.endswith("-repo")), key=lambda m: int(m.rsplit("-", 1)[1]))


def roles(cluster: Cluster) -> dict[str, str]:
    """master/slave of every member that answers."""
    out = {}
    for member in members_of(cluster):
        try:
            out[member] = info(cluster, address(cluster, member))["role"]
        except (OSError, RespError):
            continue
    return out


def primary_of(cluster: Cluster) -> str:
    masters = [m for m, r in roles(cluster).items() if r == "master"]
    assert len(masters) == 1, masters
    return masters[0]


def sentinel_primary(cluster: Cluster, host: str) -> str:
    """What a Sentinel names as primary, asked as the password-less default user."""
    conn = Resp(host, SENTINEL_PORT, str(cluster.ca_file))
    try:
        return conn.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", cluster.name)[0]
    finally:
        conn.close()


class Writer(threading.Thread):
    """SET app:tick:<n> every 10 ms on the primary that the Sentinels name; remembers acknowledged ones."""

    def __init__(self, cluster: Cluster, start: int):
        super().__init__(daemon=True)
        self.cluster, self.next_id = cluster, start
        self.acked: list[int] = []
        self.at: list[float] = []
        self.errors: dict[str, int] = {}
        self.addresses = [address(cluster, m) for m in members_of(cluster)]
        self.password = cluster.password("app")
        self.stopping = threading.Event()

    def _primary(self) -> Resp:
        for host in self.addresses:
            try:
                primary = sentinel_primary(self.cluster, host)
                return Resp(primary, PORT, str(self.cluster.ca_file), user="app", password=self.password)
            except (OSError, RespError):
                continue
        raise ConnectionError("no Sentinel answers")

    def run(self) -> None:
        conn = None
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = self._primary()
                conn.call("SET", f"app:tick:{self.next_id}", self.next_id)
                self.acked.append(self.next_id)
                self.at.append(time.monotonic())
                self.next_id += 1
            except (OSError, RespError) as error:
                kind = str(error).split(" ", 1)[0] if isinstance(error, RespError) else type(error).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.01)

    def stop(self) -> list[int]:
        self.stopping.set()
        self.join(10)
        return self.acked

    def longest_gap(self) -> float:
        return max(b - a for a, b in itertools.pairwise(self.at))


def missing(cluster: Cluster, acked: list[int]) -> list[int]:
    conn = connect(cluster, address(cluster, primary_of(cluster)))
    try:
        lost = []
        for start in range(0, len(acked), 500):
            chunk = acked[start : start + 500]
            values = conn.call("MGET", *(f"app:tick:{n}" for n in chunk))
            lost += [n for n, value in zip(chunk, values, strict=True) if value != str(n)]
        return lost
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "redis-sentinel.yml", NAME, backup={"enabled": True})
    yield cluster
    cluster.purge()


def test_one_primary_two_online_replicas_and_keys_replicate(rc):
    primary = primary_of(rc)
    state = info(rc, address(rc, primary))
    assert state["connected_slaves"] == "2"
    replicas = {m for m in MEMBERS if m != primary}
    slaves = [v for k, v in state.items() if k.startswith("slave") and k[5:].isdigit()]
    assert sorted(dict(p.split("=") for p in s.split(","))["ip"] for s in slaves) == sorted(
        address(rc, m) for m in replicas
    )
    assert all("state=online" in s for s in slaves)
    conn = connect(rc, address(rc, primary))
    conn.call("SET", "app:replicated", "yes")
    assert conn.call("WAIT", 2, 5000) == 2
    conn.close()
    for member in replicas:
        replica = connect(rc, address(rc, member))
        assert replica.call("GET", "app:replicated") == "yes"
        with pytest.raises(RespError, match=r"^READONLY"):
            replica.call("SET", "app:on-replica", "no")
        replica.close()
        assert info(rc, address(rc, member))["master_link_status"] == "up"


def test_acl_users_can_do_what_the_spec_says_and_nothing_else(rc):
    host = address(rc, primary_of(rc))
    app = connect(rc, host, "app")
    assert app.call("SET", "app:k", "v") == "OK"
    assert app.call("GET", "app:k") == "v"
    with pytest.raises(RespError, match=r"^NOPERM"):
        app.call("SET", "other:k", "v")  # outside keys: ["app:*"]
    for dangerous in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST")):
        with pytest.raises(RespError, match=r"^NOPERM"):
            app.call(*dangerous)
    app.close()
    reporting = connect(rc, host, "reporting")
    assert reporting.call("GET", "app:k") == "v"
    with pytest.raises(RespError, match=r"^NOPERM"):
        reporting.call("SET", "app:k", "w")
    reporting.close()
    # The role's own users: the replication user only replicates.
    replicator = connect(rc, host, "replicator")
    with pytest.raises(RespError, match=r"^NOPERM"):
        replicator.call("GET", "app:k")
    replicator.close()
    # The default user is off: without AUTH nothing works, and it cannot log in.
    anonymous = Resp(host, PORT, str(rc.ca_file))
    with pytest.raises(RespError, match=r"^NOAUTH"):
        anonymous.call("GET", "app:k")
    with pytest.raises(RespError, match="WRONGPASS"):
        anonymous.call("AUTH", "default", "")
    anonymous.close()
    with pytest.raises(RespError, match="WRONGPASS"):
        Resp(host, PORT, str(rc.ca_file), user="app", password="not-the-password")


def test_plaintext_and_untrusted_certificates_are_refused(rc):
    host = address(rc, MEMBERS[0])
    for port in (PORT, SENTINEL_PORT):
        plain = socket.create_connection((host, port), timeout=5)
        plain.sendall(b"PING\r\n")
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            assert b"PONG" not in plain.recv(100)  # the TLS port closes on a non-TLS hello
        plain.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        Resp(host, PORT)  # the system CAs do not know the cluster CA


def test_sentinels_see_the_primary_and_a_quorum(rc):
    primary = address(rc, primary_of(rc))
    for member in MEMBERS:
        host = address(rc, member)
        assert sentinel_primary(rc, host) == primary
        conn = connect(rc, host, "admin", SENTINEL_PORT)
        assert conn.call("SENTINEL", "CKQUORUM", NAME).startswith("OK 3 usable Sentinels")
        master = conn.call("SENTINEL", "MASTER", NAME)
        fields = dict(zip(master[::2], master[1::2], strict=True))
        assert (fields["quorum"], fields["num-slaves"], fields["num-other-sentinels"]) == ("2", "2", "2")
        conn.close()
        # The password-less default user may only find the primary.
        anonymous = Resp(host, SENTINEL_PORT, str(rc.ca_file))
        with pytest.raises(RespError, match=r"^NOPERM"):
            anonymous.call("SENTINEL", "SET", NAME, "quorum", "1")
        anonymous.close()


def test_persistence_and_parameters_from_the_spec(rc):
    conn = connect(rc, address(rc, MEMBERS[0]))
    config = conn.call("CONFIG", "GET", "*")
    conn.close()
    config = dict(zip(config[::2], config[1::2], strict=True))
    # examples/redis-sentinel.yml: persistence both, min-replicas-to-write 1.
    assert config["appendonly"] == "yes"
    assert config["save"] == "3600 1 300 100 60 10000"
    assert (config["min-replicas-to-write"], config["maxmemory-policy"]) == ("1", "noeviction")
    assert (config["port"], config["tls-port"], config["protected-mode"]) == ("0", str(PORT), "yes")


def test_second_apply_changes_nothing(rc):
    run = rc.playbook("cluster_apply")
    assert_unchanged(run)


def test_rotate_credentials_replaces_every_password_without_a_restart(rc):
    """The role's own users too: replication and the Sentinels move to the new passwords live."""
    users = ["admin", "replicator", "trove_sentinel", "app"]
    old = {user: rc.password(user) for user in users}
    pids = {member: info(rc, address(rc, member), "server")["process_id"] for member in MEMBERS}
    assert_ok(rc.playbook("rotate_credentials"))
    assert not (rc.home / "secrets" / NAME / "previous").exists()
    assert all(rc.password(user) != old[user] for user in users)
    for member in MEMBERS:
        host = address(rc, member)
        for port, port_users in ((PORT, users), (SENTINEL_PORT, ["admin", "trove_sentinel"])):
            for user in port_users:
                with pytest.raises(RespError, match=r"^WRONGPASS"):
                    Resp(host, port, str(rc.ca_file), user=user, password=old[user])
        sentinel = connect(rc, host, "trove_sentinel", SENTINEL_PORT)
        assert sentinel.call("SENTINEL", "CKQUORUM", NAME).startswith("OK 3 usable Sentinels")
        sentinel.close()
    assert {member: info(rc, address(rc, member), "server")["process_id"] for member in MEMBERS} == pids
    # Replicas and Sentinels log in again, with the new passwords only.
    primary = primary_of(rc)
    conn = connect(rc, address(rc, primary))
    conn.call("CLIENT", "KILL", "USER", "replicator")
    conn.call("CLIENT", "KILL", "USER", "trove_sentinel")
    # A client that failed AUTH stays the (disabled) default user: every Sentinel logged in again.
    wait_for(
        lambda: (
            {
                field.split("=")[1].rsplit(":", 1)[0]
                for line in conn.call("CLIENT", "LIST").splitlines()
                if " user=trove_sentinel " in f" {line} "
                for field in line.split()
                if field.startswith("addr=")
            }
            >= {address(rc, member) for member in MEMBERS}
        ),
        30,
    )
    for member in set(MEMBERS) - {primary}:
        wait_for(lambda member=member: info(rc, address(rc, member))["master_link_status"] == "up", 30)
    # min-replicas-to-write 1: the write is taken only with a replica connected again.
    conn.call("SET", "after-rotation", "1")
    conn.close()
    for member in set(MEMBERS) - {primary}:
        replica = connect(rc, address(rc, member))
        wait_for(lambda replica=replica: replica.call("GET", "after-rotation") == "1", 30)
        replica.close()
    run = rc.playbook("cluster_apply")
    assert_unchanged(run)


def test_rotate_tls_reaches_every_server_and_sentinel(rc):
    ports = (PORT, SENTINEL_PORT)
    before = {(m, p): served_serial(rc, m, starttls=None, port=p) for m in MEMBERS for p in ports}
    keys = {f"tls:{n}": str(n) for n in range(20)}
    conn = connect(rc, address(rc, primary_of(rc)))
    for key, value in keys.items():
        conn.call("SET", key, value)
    conn.close()
    assert_ok(rc.playbook("rotate_tls"))
    after = {(m, p): served_serial(rc, m, starttls=None, port=p) for m in MEMBERS for p in ports}
    assert [key for key in before if after[key] == before[key]] == []
    # Restarted one at a time: every write kept, one primary, a quorum of Sentinels on every member.
    assert sorted(roles(rc).values()) == ["master", "slave", "slave"]
    for member in MEMBERS:
        host = address(rc, member)
        sentinel = connect(rc, host, "admin", SENTINEL_PORT)
        assert sentinel.call("SENTINEL", "CKQUORUM", NAME).startswith("OK 3 usable Sentinels")
        sentinel.close()
        assert sentinel_primary(rc, host) == address(rc, primary_of(rc))
        replica = connect(rc, host)
        assert {key: replica.call("GET", key) for key in keys} == keys
        replica.close()


def test_status_shows_roles(rc):
    run = rc.playbook("cluster_status")
    assert_ok(run)
    primary = primary_of(rc)
    for member in MEMBERS:
        role, state = ("primary", "running") if member == primary else ("replica", "streaming")
        assert f"{member:<20} {role:<8} {state:<10} " in run.output


def test_health_names_a_stopped_server_and_sentinel_and_passes_again(rc):
    healthy = rc.playbook("cluster_health")
    assert_unchanged(healthy)
    assert f"{NAME} is healthy" in healthy.output
    server_down, sentinel_down = [m for m in MEMBERS if m != primary_of(rc)]
    units = {server_down: "redis-server", sentinel_down: "redis-sentinel"}
    for member, unit in units.items():
        subprocess.run(["podman", "exec", member, "systemctl", "stop", unit], check=True, env=PODMAN_ENV)
    try:
        sick = rc.playbook("cluster_health")
        assert sick.rc != 0
        assert f"{server_down}: Redis does not answer" in sick.output
        assert f"{sentinel_down}: Sentinel: " in sick.output
    finally:
        for member, unit in units.items():
            subprocess.run(["podman", "exec", member, "systemctl", "start", unit], check=True, env=PODMAN_ENV)
    wait_for(lambda: rc.playbook("cluster_health").rc == 0, 90, lambda: rc.runs[-1].output[-3000:])


def test_refusals_name_the_problem(rc):
    primary = primary_of(rc)
    run = rc.playbook("failover")
    assert run.rc != 0
    assert f"primary {primary} still answers" in run.output
    run = rc.playbook("switchover", "-e", "target=nobody")
    assert run.rc != 0
    assert "target: nobody cannot become primary (not a member; members: " in run.output
    bad = yaml.safe_load(rc.spec_file.read_text())
    bad["spec"]["users"][0]["grants"] = [{"database": "appdb", "access": "all"}]
    bad_file = rc.spec_file.with_name("bad.yml")
    bad_file.write_text(yaml.safe_dump(bad))
    run = rc.playbook("cluster_apply", spec_file=bad_file)
    assert run.rc != 0
    assert "spec.users[0].grants: not allowed for engine 'redis'; use keys and commands" in run.output
    assert primary_of(rc) == primary


def test_switchover_under_writes_loses_no_acknowledged_write(rc):
    old = primary_of(rc)
    target = next(m for m in MEMBERS if m != old)
    writer = Writer(rc, 1)
    writer.start()
    time.sleep(1)
    run = rc.playbook("switchover", "-e", f"target={target}")
    time.sleep(1)
    acked = writer.stop()
    assert_ok(run)
    assert primary_of(rc) == target
    wait_for(lambda: all(sentinel_primary(rc, address(rc, m)) == address(rc, target) for m in MEMBERS))
    lost = missing(rc, acked)
    print(
        f"switchover: {len(acked)} writes acknowledged, {len(lost)} lost, longest gap {writer.longest_gap():.2f}s, "
        f"errors {writer.errors}"
    )
    assert len(acked) > 100
    assert lost == []
    assert writer.longest_gap() < 30
    assert info(rc, address(rc, old))["master_host"] == address(rc, target)


def test_killing_the_primary_fails_over_automatically(rc):
    old = primary_of(rc)
    writer = Writer(rc, 1_000_000)
    writer.start()
    time.sleep(2)
    killed = time.monotonic()
    subprocess.run(["podman", "kill", old], check=True, capture_output=True, env=PODMAN_ENV)
    # No playbook: the Sentinels on the survivors agree the primary is down and promote a replica.
    wait_for(lambda: writer.at and writer.at[-1] > killed + 1, timeout=90)
    time.sleep(1)
    acked = writer.stop()
    new = primary_of(rc)
    assert new != old
    lost = missing(rc, acked)
    print(
        f"automatic failover: {len(acked)} writes acknowledged, {len(lost)} lost (acknowledged by the killed primary "
        f"but not replicated), longest gap {writer.longest_gap():.2f}s"
    )
    assert writer.longest_gap() < 60
    # Asynchronous replication: what is lost is the last writes the killed primary acknowledged
    # before the replica received them, one run of them, never a write acknowledged after the kill.
    after_kill = next(n for n, at in zip(acked, writer.at, strict=True) if at > killed)
    assert all(n < after_kill for n in lost)
    assert lost == list(range(lost[0], lost[0] + len(lost))) if lost else True
    # The old primary comes back as a replica of the new one: Sentinel reconfigures it.
    subprocess.run(["podman", "start", old], check=True, capture_output=True, env=PODMAN_ENV)
    wait_for(lambda: info(rc, address(rc, old)).get("master_host") == address(rc, new), timeout=120)
    wait_for(lambda: info(rc, address(rc, old))["master_link_status"] == "up", timeout=60)
    conn = connect(rc, address(rc, old))
    assert conn.call("GET", f"app:tick:{acked[-1]}") == str(acked[-1])
    conn.close()


def test_backup_takes_a_snapshot_of_the_primary_the_sentinels_name(rc):
    conn = connect(rc, address(rc, primary_of(rc)))
    conn.call("SET", "app:backup-marker", "after-failover")
    conn.close()
    run = rc.playbook("backup")
    assert_ok(run)
    newest = subprocess.run(
        ["podman", "exec", f"{NAME}-repo", "sh", "-c", "cat $(ls -1t /srv/data/backup/*.rdb | head -n 1)"],
        check=True,
        env=PODMAN_ENV,
        capture_output=True,
    ).stdout
    assert newest.startswith(b"REDIS0010")
    assert b"app:backup-marker" in newest


def test_restore_the_newest_snapshot_into_a_new_cluster(rc, tmp_path_factory, request):
    """Into a standalone cluster with an append-only file: exactly the keys of the snapshot, still
    there after a restart (the AOF was rewritten from them)."""
    conn = connect(rc, address(rc, primary_of(rc)))
    conn.call("SET", "app:restore-check", "in-the-snapshot")
    expected = conn.call("DBSIZE")
    assert_ok(rc.playbook("backup"))
    conn.call("SET", "app:after-snapshot", "1")
    conn.close()
    target = restore_target(request, tmp_path_factory, rc, "redis-standalone.yml", f"{NAME}-r")
    early = target.playbook("restore", "-e", f"source={NAME}", "-e", "target_time='2000-01-01 00:00:00'")
    assert early.rc != 0
    assert f"source: {NAME} has no snapshot taken at or before" in early.output
    run = target.playbook("restore", "-e", f"source={NAME}")
    assert_ok(run)
    assert f"restored {NAME}-r from {NAME}: backup " in run.output
    assert f"{expected} keys, primary {NAME}-r-0" in run.output

    def restored() -> tuple:
        conn = connect(target, address(target, f"{NAME}-r-0"))
        try:
            return (
                conn.call("DBSIZE"),
                conn.call("GET", "app:restore-check"),
                conn.call("GET", "app:after-snapshot"),
                conn.call("CONFIG", "GET", "appendonly"),
            )
        finally:
            conn.close()

    assert restored() == (expected, "in-the-snapshot", None, ["appendonly", "yes"])
    subprocess.run(
        ["podman", "exec", f"{NAME}-r-0", "systemctl", "restart", "redis-server"], check=True, env=PODMAN_ENV
    )
    wait_for(lambda: restored() == (expected, "in-the-snapshot", None, ["appendonly", "yes"]), 30)
    refused = target.playbook("restore", "-e", f"source={NAME}")
    assert refused.rc != 0
    assert f"confirm: cluster {NAME}-r has data on {NAME}-r-0; pass -e confirm={NAME}-r" in refused.output
