"""Redis rolling restarts and the rolling minor upgrade on real members, with a client writing throughout.

Topology sentinel: the replicas restart first, each in sync again before the next, then the primary
hands its role over through Sentinel and restarts as a replica; sharded: the same shard by shard with
CLUSTER FAILOVER; standalone restarts in place. The upgrade tests first put every member on an older
Debian release (apt-get install --allow-downgrades), as if the cluster had been built before the update.
Outcomes are read from Redis (INFO, CLUSTER INFO/NODES, the keys) and from the members' processes.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import yaml
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, older_release, wait_for
from redis.sentinel import Sentinel
from test_redis import PODMAN_ENV, Writer, address, connect, info, members_of, missing, primary_of, roles
from test_redis_sharded import ClusterWriter, assert_whole, missing_in_cluster, primary_of_shard

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NAME = "e2e-rroll"
PACKAGES = ("redis-server", "redis-sentinel", "redis-tools")


def podman_exec(member: str, *argv: str) -> str:
    return subprocess.run(
        ["podman", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", member, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=PODMAN_ENV,
        timeout=600,
    ).stdout


def server_pid(cluster: Cluster, member: str) -> str:
    return info(cluster, address(cluster, member), "server")["process_id"]


def started(cluster: Cluster) -> dict[str, int]:
    """Each member's redis-server start time in clock ticks since boot (one kernel for all members)."""
    out = {}
    for member in members_of(cluster):
        stat = podman_exec(member, "cat", f"/proc/{server_pid(cluster, member)}/stat")
        out[member] = int(stat.rsplit(")", 1)[1].split()[19])
    return out


def runs_replaced_binaries(member: str, unit: str) -> bool:
    """The unit's process runs an executable that a package upgrade has since replaced."""
    pid = podman_exec(member, "systemctl", "show", "--property=MainPID", "--value", unit).strip()
    assert pid != "0", f"{member}: {unit} is not running"
    return podman_exec(member, "readlink", f"/proc/{pid}/exe").strip().endswith("(deleted)")


def package_version(member: str) -> str:
    return podman_exec(member, "dpkg-query", "--show", "--showformat=${Version}", "redis-server")


def binary_build_id(member: str) -> str:
    return re.search(r"build=(\w+)", podman_exec(member, "redis-server", "--version"))[1]


def downgrade(cluster: Cluster, units: tuple[str, ...]) -> tuple[str, str]:
    """Every member on the release before the installed one, restarted on it: (older, newest).
    Skips when the Debian archive offers a single release."""
    members = members_of(cluster)
    newest, older = older_release(podman_exec, members[0], PACKAGES[0])
    for member in members:
        if member != members[0]:
            podman_exec(member, "apt-get", "update", "-qq")
        podman_exec(
            member,
            *("apt-get", "install", "-y", "-qq", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confold"),
            *(f"{p}={older}" for p in PACKAGES),
        )
        for unit in units:
            podman_exec(member, "systemctl", "restart", unit)
        wait_for(lambda m=member: in_sync(cluster, m), timeout=120)
    for member in members:
        assert package_version(member) == older
        assert not any(runs_replaced_binaries(member, unit) for unit in units)
    return older, newest


def in_sync(cluster: Cluster, member: str) -> bool:
    """Loaded its data and, as a replica, in sync with its primary."""
    state = info(cluster, address(cluster, member), "replication")
    loaded = info(cluster, address(cluster, member), "persistence")["loading"] == "0"
    return loaded and (state["role"] == "master" or state.get("master_link_status") == "up")


def assert_upgraded(cluster: Cluster, run_output: str, newest: str, units: tuple[str, ...]) -> None:
    """Every member runs the newest package's binaries: INFO's build id is the installed binary's."""
    for member in members_of(cluster):
        assert package_version(member) == newest
        assert not any(runs_replaced_binaries(member, unit) for unit in units), member
        server = info(cluster, address(cluster, member), "server")
        assert server["redis_build_id"] == binary_build_id(member)
        assert f"{member}: {server['redis_version']} ({newest})" in run_output


def rewrite(cluster: Cluster, **parameters: object) -> None:
    document = yaml.safe_load(cluster.spec_file.read_text())
    document["spec"]["parameters"].update(parameters)
    cluster.spec_file.write_text(yaml.safe_dump(document))


def quorum(cluster: Cluster, member: str) -> str:
    conn = connect(cluster, address(cluster, member), "admin", 26379)
    try:
        return conn.call("SENTINEL", "CKQUORUM", cluster.name)
    finally:
        conn.close()


def assert_rolled(cluster: Cluster, before: dict[str, int], old_primary: str) -> None:
    """Every member restarted, the replicas before the old primary, which now follows the new one."""
    after = started(cluster)
    assert all(after[m] > before[m] for m in before), (before, after)
    replicas = [m for m in before if m != old_primary]
    assert max(after[r] for r in replicas) < after[old_primary]
    new_primary = primary_of(cluster)
    assert new_primary != old_primary
    wait_for(lambda: info(cluster, address(cluster, old_primary))["master_link_status"] == "up", timeout=60)
    assert info(cluster, address(cluster, old_primary))["master_host"] == address(cluster, new_primary)
    for member in before:
        assert quorum(cluster, member).startswith("OK 3 usable Sentinels")


def under_writes(cluster: Cluster, writer: Writer, *playbook: str):
    writer.start()
    time.sleep(1)
    run = cluster.playbook(*playbook)
    time.sleep(1)
    acked = writer.stop()
    print(
        f"{playbook[0]}: {len(acked)} writes acknowledged, longest gap {writer.longest_gap():.2f}s, "
        f"errors {writer.errors}"
    )
    return run, acked


def module_cluster(example: str, name: str):
    """A fixture: the example applied on fresh members once for this module, purged afterwards."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        applied = applied_cluster(tmp_path_factory, example, name)
        yield applied
        applied.purge()

    return cluster


sentinel = module_cluster("redis-sentinel.yml", NAME)


def test_redis_py_sentinel_finds_the_primary_without_a_password(sentinel):
    """redis-py lists the primaries (SENTINEL MASTERS) as the Sentinels' password-less default user."""
    tls = {"ssl": True, "ssl_ca_certs": str(sentinel.ca_file)}
    hosts = [(address(sentinel, m), 26379) for m in members_of(sentinel)]
    finder = Sentinel(hosts, sentinel_kwargs={**tls, "socket_timeout": 5}, **tls)
    assert finder.discover_master(sentinel.name) == (address(sentinel, primary_of(sentinel)), 6379)
    client = finder.master_for(sentinel.name, username="app", password=sentinel.password("app"), socket_timeout=5)
    assert client.set("app:through-sentinel", "1") is True
    assert len(finder.discover_slaves(sentinel.name)) == 2


def test_new_settings_restart_the_replicas_first_then_the_primary_after_a_switchover(sentinel):
    old_primary, before = primary_of(sentinel), started(sentinel)
    rewrite(sentinel, maxmemory="200mb")
    writer = Writer(sentinel, 1)
    run, acked = under_writes(sentinel, writer, "cluster_apply")
    assert_ok(run)
    assert_rolled(sentinel, before, old_primary)
    for member in before:
        conn = connect(sentinel, address(sentinel, member))
        assert conn.call("CONFIG", "GET", "maxmemory") == ["maxmemory", str(200 * 1024 * 1024)]
        conn.close()
    assert len(acked) > 100
    assert missing(sentinel, acked) == []
    assert writer.longest_gap() < 30  # the figures come from `make bench`
    assert_unchanged(sentinel.playbook("cluster_apply"))


def test_upgrade_rolls_every_member_to_the_newest_release(sentinel):
    units = ("redis-server", "redis-sentinel")
    _, newest = downgrade(sentinel, units)
    assert sorted(roles(sentinel).values()) == ["master", "slave", "slave"]
    old_primary, before = primary_of(sentinel), started(sentinel)
    writer = Writer(sentinel, 1_000_000)
    run, acked = under_writes(sentinel, writer, "upgrade")
    assert_ok(run)
    assert_upgraded(sentinel, run.output, newest, units)
    assert_rolled(sentinel, before, old_primary)
    assert missing(sentinel, acked) == []
    assert writer.longest_gap() < 30
    again = sentinel.playbook("upgrade")
    assert_unchanged(again)
    assert f"({newest})" in again.output


def sentinel_view(cluster: Cluster, member: str) -> tuple[dict[str, str], set[str]]:
    """A Sentinel's SENTINEL MASTER fields, and the addresses of the other Sentinels it knows."""
    conn = connect(cluster, address(cluster, member), "admin", 26379)
    try:
        master, sentinels = (conn.call("SENTINEL", what, cluster.name) for what in ("MASTER", "SENTINELS"))
    finally:
        conn.close()
    fields = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in [master, *sentinels]]
    return fields[0], {other["ip"] for other in fields[1:]}


def test_scaling_down_makes_the_sentinels_forget_the_member_that_left(sentinel):
    document = yaml.safe_load(sentinel.spec_file.read_text())
    document["spec"]["members"] = 4
    sentinel.spec_file.write_text(yaml.safe_dump(document))
    assert_ok(sentinel.playbook("cluster_apply"))
    leaving = address(sentinel, f"{NAME}-3")
    document["spec"]["members"] = 3
    sentinel.spec_file.write_text(yaml.safe_dump(document))
    assert_ok(sentinel.playbook("cluster_apply"))
    assert members_of(sentinel) == [f"{NAME}-{i}" for i in range(3)]
    for member in members_of(sentinel):
        fields, others = sentinel_view(sentinel, member)
        assert (fields["num-other-sentinels"], fields["num-slaves"], fields["quorum"]) == ("2", "2", "2")
        assert leaving not in others
        assert quorum(sentinel, member).startswith("OK 3 usable Sentinels")
    assert_unchanged(sentinel.playbook("cluster_apply"))


standalone = module_cluster("redis-standalone.yml", f"{NAME}-1")


def test_standalone_upgrade_restarts_in_place_and_keeps_the_data(standalone):
    member = members_of(standalone)[0]
    conn = connect(standalone, address(standalone, member), "app")
    conn.call("SET", "before:upgrade", "kept")
    conn.close()
    _, newest = downgrade(standalone, ("redis-server",))
    pid = server_pid(standalone, member)
    run = standalone.playbook("upgrade")
    assert_ok(run)
    assert_upgraded(standalone, run.output, newest, ("redis-server",))
    assert server_pid(standalone, member) != pid
    conn = connect(standalone, address(standalone, member))
    assert conn.call("GET", "before:upgrade") == "kept"
    conn.close()
    assert_unchanged(standalone.playbook("upgrade"))


sharded = module_cluster("redis-sharded.yml", f"{NAME}-s")


def test_sharded_upgrade_hands_every_shard_over_and_keeps_every_slot(sharded):
    units = ("redis-server",)
    _, newest = downgrade(sharded, units)
    wait_for(lambda: assert_whole(sharded, 3) is None, timeout=90)
    pairs = {shard: primary_of_shard(sharded, shard) for shard in range(3)}
    writer = ClusterWriter(sharded, 1)
    run, acked = under_writes(sharded, writer, "upgrade")
    assert_ok(run)
    assert_upgraded(sharded, run.output, newest, units)
    # Every shard's replica took over, and the old primary follows it.
    for shard, (old, new) in pairs.items():
        wait_for(lambda s=shard, o=old, n=new: primary_of_shard(sharded, s) == (n, o), timeout=60)
    assert_whole(sharded, 3)
    assert len(acked) > 100
    assert missing_in_cluster(sharded, acked) == []
    assert writer.longest_gap() < 30
    assert_unchanged(sharded.playbook("upgrade"))
