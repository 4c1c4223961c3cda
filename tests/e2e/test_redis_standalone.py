"""Redis topology standalone on a real member: one server, TLS, ACL users, an append-only file, and
RDB backups to a repository member."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import applied_cluster, assert_ok, wait_for
from test_redis import PODMAN_ENV, RespError, address, connect, info

pytestmark = pytest.mark.redis

NAME = "e2e-redis-single"
MEMBER = f"{NAME}-0"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "redis-standalone.yml", NAME, backup={"enabled": True})
    yield cluster
    cluster.purge()


def test_one_primary_with_the_spec_users_and_persistence(single):
    host = address(single, MEMBER)
    assert info(single, host)["role"] == "master"
    assert info(single, host)["connected_slaves"] == "0"
    app = connect(single, host, "app")
    # examples/redis-standalone.yml: keys ["*"], commands +@all -@dangerous.
    assert app.call("SET", "any:key", "kept") == "OK"
    with pytest.raises(RespError, match=r"^NOPERM"):
        app.call("FLUSHALL")
    app.close()
    admin = connect(single, host)
    config = admin.call("CONFIG", "GET", "*")
    admin.close()
    config = dict(zip(config[::2], config[1::2], strict=True))
    assert (config["appendonly"], config["save"], config["port"]) == ("yes", "", "0")


def test_writes_survive_a_restart(single):
    host = address(single, MEMBER)
    app = connect(single, host, "app")
    app.call("SET", "any:restart", "survives")
    app.close()
    subprocess.run(
        ["podman", "exec", MEMBER, "systemctl", "restart", "redis-server"], check=True, env=PODMAN_ENV, timeout=60
    )
    wait_for(lambda: info(single, host)["role"] == "master", timeout=30)
    admin = connect(single, host)
    assert admin.call("GET", "any:restart") == "survives"
    admin.close()


def test_switchover_and_failover_are_refused(single):
    for playbook in ("switchover", "failover"):
        run = single.playbook(playbook)
        assert run.rc != 0
        assert f"{playbook}: spec.topology standalone has no replica" in run.output


def test_backup_pulls_an_rdb_snapshot_to_the_repository(single):
    host = address(single, MEMBER)
    app = connect(single, host, "app")
    app.call("SET", "any:backed-up", "in-the-snapshot")
    app.close()
    for _ in range(3):  # retention.full is 2: the oldest goes
        run = single.playbook("backup")
        assert_ok(run)
    listing = subprocess.run(
        ["podman", "exec", f"{NAME}-repo", "sh", "-c", "ls /srv/data/backup/*.rdb"],
        check=True,
        env=PODMAN_ENV,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(listing) == 2
    newest = subprocess.run(
        ["podman", "exec", f"{NAME}-repo", "cat", max(listing)], check=True, env=PODMAN_ENV, capture_output=True
    ).stdout
    assert newest.startswith(b"REDIS0010")  # Redis 7.0's RDB format
    assert b"any:backed-up" in newest
    assert b"in-the-snapshot" in newest
    assert "'type': 'rdb'" in run.output or "type: rdb" in run.output


def test_changing_persistence_keeps_every_write(single):
    """aof -> rdb: without switching at run time first, the restart would start from an old dump.rdb."""
    host = address(single, MEMBER)
    app = connect(single, host, "app")
    app.call("SET", "any:persistence", "kept-across-modes")
    app.close()
    document = yaml.safe_load(single.spec_file.read_text())
    document["spec"]["persistence"] = {"mode": "rdb"}
    rdb_file = single.spec_file.with_name("rdb.yml")
    rdb_file.write_text(yaml.safe_dump(document))
    assert_ok(single.playbook("cluster_apply", spec_file=rdb_file))
    admin = connect(single, host)
    config = admin.call("CONFIG", "GET", "*")
    config = dict(zip(config[::2], config[1::2], strict=True))
    assert (config["appendonly"], config["save"]) == ("no", "3600 1 300 100 60 10000")
    assert int(info(single, host, "server")["uptime_in_seconds"]) < 120  # restarted with the new file
    assert admin.call("GET", "any:persistence") == "kept-across-modes"
    admin.close()
