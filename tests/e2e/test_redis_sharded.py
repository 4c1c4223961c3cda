"""Redis topology sharded (Redis Cluster) on real members: 3 shards of a primary and a replica.

Everything is checked in Redis itself (CLUSTER INFO/NODES/SLOTS, the keys) through the minimal
RESP client of test_redis.py, made cluster-aware here (CRC16 key slots, MOVED and ASK redirects).
The runs that drive redis-cli --cluster (create, switchover, failover, member_replace, scaling) are at -vvv, and the
last test scans them and the members' logs for secrets with the scanners of test_secrets.py.
"""

from __future__ import annotations

import binascii
import os
import subprocess
import time

import pytest
import yaml
from conftest import Cluster, applied_cluster, assert_ok, assert_unchanged, restore_target, wait_for
from test_redis import Resp, RespError, Writer
from test_secrets import leaks, member_logs, secrets_in

pytestmark = pytest.mark.redis

NAME = "e2e-shard"
PORT = 6379
KEYS = [f"app:key:{n}" for n in range(1000)]
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF="/var/lib/trove-dbaas/containers.conf")


def key_slot(key: str) -> int:
    """Redis Cluster's slot of a key: CRC16 (XMODEM) of the key or its {hash tag}, modulo 16384."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % 16384


class ClusterClient:
    """Sends each key's command to the primary that owns its slot; follows MOVED and ASK."""

    def __init__(self, cluster: Cluster, user: str = "app"):
        self.cluster, self.user = cluster, user
        self.password = cluster.password(user)
        self.conns: dict[tuple[str, int], Resp] = {}
        self.slots: dict[int, tuple[str, int]] = {}
        self.seeds = list(addresses(cluster).values())
        self.refresh()

    def conn(self, node: tuple[str, int]) -> Resp:
        if node not in self.conns:
            self.conns[node] = Resp(node[0], node[1], str(self.cluster.ca_file), user=self.user, password=self.password)
        return self.conns[node]

    def refresh(self) -> None:
        for member in self.seeds:
            try:
                ranges = self.conn((member, PORT)).call("CLUSTER", "SLOTS")
            except (OSError, RespError):
                self.conns.pop((member, PORT), None)
                continue
            for low, high, primary, *_ in ranges:
                for slot in range(low, high + 1):
                    self.slots[slot] = (primary[0], primary[1])
            return
        raise ConnectionError("no member answers CLUSTER SLOTS")

    def call(self, key: str, *args):
        node = self.slots[key_slot(key)]
        asking = False
        for _ in range(8):
            try:
                conn = self.conn(node)
                if asking:
                    conn.call("ASKING")
                return conn.call(*args)
            except RespError as error:
                kind, _, where = str(error).partition(" ")
                if kind not in ("MOVED", "ASK"):
                    raise
                host, port = where.split(" ")[1].rsplit(":", 1)
                node, asking = (host, int(port)), kind == "ASK"
                if kind == "MOVED":
                    self.refresh()
            except OSError:
                self.conns.pop(node, None)
                time.sleep(1)
                self.refresh()
                node, asking = self.slots[key_slot(key)], False
        raise ConnectionError(f"{key}: too many redirects")

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


class _ClusterConnection:
    """The Writer's connection, through the cluster-aware client: SET goes to the key's primary."""

    def __init__(self, cluster: Cluster):
        self.client = ClusterClient(cluster)

    def call(self, *args):
        return self.client.call(args[1], *args)

    def close(self) -> None:
        self.client.close()


class ClusterWriter(Writer):
    def _primary(self) -> _ClusterConnection:
        return _ClusterConnection(self.cluster)


def missing_in_cluster(cluster: Cluster, acked: list[int]) -> list[int]:
    client = ClusterClient(cluster, "admin")
    try:
        return [n for n in acked if client.call(f"app:tick:{n}", "GET", f"app:tick:{n}") != str(n)]
    finally:
        client.close()


def addresses(cluster: Cluster) -> dict[str, str]:
    return {name: hv["ansible_host"] for name, hv in sorted(cluster.members().items()) if not name.endswith("-repo")}


def admin(cluster: Cluster, member: str) -> Resp:
    return Resp(
        addresses(cluster)[member], PORT, str(cluster.ca_file), user="admin", password=cluster.password("admin")
    )


def ask(cluster: Cluster, member: str, *args):
    conn = admin(cluster, member)
    try:
        return conn.call(*args)
    finally:
        conn.close()


def cluster_info(cluster: Cluster, member: str) -> dict[str, str]:
    text = ask(cluster, member, "CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def nodes(cluster: Cluster, member: str) -> dict[str, dict]:
    """CLUSTER NODES as seen from `member`, keyed by member name."""
    by_address = {address: name for name, address in addresses(cluster).items()}
    out = {}
    for line in ask(cluster, member, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        address = fields[1].split(":", 1)[0]
        flags = fields[2].split(",")
        out[by_address.get(address, address)] = {
            "id": fields[0],
            "role": "master" if "master" in flags else "slave",
            "master": fields[3],
            "failed": "fail" in flags or "fail?" in flags,
            "slots": sum(int(r.split("-")[-1]) - int(r.split("-")[0]) + 1 for r in fields[8:] if not r.startswith("[")),
        }
    return out


def shards(cluster: Cluster, member: str) -> dict[str, str]:
    """primary member -> its replica member, from `member`'s view."""
    view = nodes(cluster, member)
    by_id = {node["id"]: name for name, node in view.items()}
    return {by_id[node["master"]]: name for name, node in view.items() if node["role"] == "slave"}


def assert_whole(cluster: Cluster, shard_count: int) -> None:
    """Every member sees cluster_state ok, 16384 slots served by shard_count primaries, one replica each."""
    for member in addresses(cluster):
        info = cluster_info(cluster, member)
        assert (info["cluster_state"], info["cluster_slots_assigned"], info["cluster_slots_ok"]) == (
            "ok",
            "16384",
            "16384",
        )
        assert (info["cluster_size"], info["cluster_known_nodes"]) == (str(shard_count), str(2 * shard_count))
    view = nodes(cluster, f"{cluster.name}-0")
    primaries = [name for name, node in view.items() if node["role"] == "master"]
    assert len(primaries) == shard_count and all(view[name]["slots"] > 0 for name in primaries)
    assert sum(view[name]["slots"] for name in primaries) == 16384
    # Shards are blocks of two members in index order, whichever of the two is primary now.
    pairs = {
        tuple(sorted((p, r), key=lambda n: int(n.rsplit("-", 1)[1])))
        for p, r in shards(cluster, f"{cluster.name}-0").items()
    }
    assert pairs == {(f"{cluster.name}-{2 * k}", f"{cluster.name}-{2 * k + 1}") for k in range(shard_count)}


def assert_every_key(cluster: Cluster) -> None:
    client = ClusterClient(cluster)
    try:
        missing = [key for key in KEYS if client.call(key, "GET", key) != key[::-1]]
    finally:
        client.close()
    assert missing == []


def rewrite(cluster: Cluster, **spec: object) -> None:
    document = yaml.safe_load(cluster.spec_file.read_text())
    document["spec"].update(spec)
    cluster.spec_file.write_text(yaml.safe_dump(document))


def primary_of_shard(cluster: Cluster, shard: int) -> tuple[str, str]:
    pair = (f"{cluster.name}-{2 * shard}", f"{cluster.name}-{2 * shard + 1}")
    view = nodes(cluster, next(m for m in addresses(cluster) if m not in pair))
    primary = next(m for m in pair if view[m]["role"] == "master" and view[m]["slots"])
    return primary, next(m for m in pair if m != primary)


@pytest.fixture(scope="module")
def sc(tmp_path_factory):
    cluster = applied_cluster(tmp_path_factory, "redis-sharded.yml", NAME, "-vvv", backup={"enabled": True})
    yield cluster
    cluster.purge()


def test_cluster_is_whole_over_tls(sc):
    assert_whole(sc, 3)
    # The first member of every shard starts as its primary.
    assert shards(sc, f"{NAME}-0") == {f"{NAME}-0": f"{NAME}-1", f"{NAME}-2": f"{NAME}-3", f"{NAME}-4": f"{NAME}-5"}
    config = ask(sc, f"{NAME}-1", "CONFIG", "GET", "*")
    config = dict(zip(config[::2], config[1::2], strict=True))
    assert (config["cluster-enabled"], config["tls-cluster"], config["tls-replication"]) == ("yes", "yes", "yes")
    assert (config["port"], config["tls-port"], config["maxmemory"]) == ("0", str(PORT), str(64 * 1024 * 1024))


def test_a_thousand_keys_through_a_cluster_client(sc):
    client = ClusterClient(sc)
    try:
        for key in KEYS:
            assert client.call(key, "SET", key, key[::-1]) == "OK"
        assert [client.call(key, "GET", key) for key in KEYS] == [key[::-1] for key in KEYS]
        # The spec user's key patterns hold in the cluster too.
        with pytest.raises(RespError, match=r"^NOPERM"):
            client.call("other:key", "SET", "other:key", "x")
    finally:
        client.close()
    sizes = {m: ask(sc, m, "DBSIZE") for m in (f"{NAME}-0", f"{NAME}-2", f"{NAME}-4")}
    assert sum(sizes.values()) == len(KEYS) and all(size > 250 for size in sizes.values()), sizes
    # Each replica has its primary's keys.
    for primary, replica in ((f"{NAME}-0", f"{NAME}-1"), (f"{NAME}-2", f"{NAME}-3"), (f"{NAME}-4", f"{NAME}-5")):
        wait_for(lambda p=primary, r=replica: ask(sc, r, "DBSIZE") == sizes[p], timeout=30)


def test_second_apply_changes_nothing(sc):
    run = sc.playbook("cluster_apply")
    assert_unchanged(run)


def test_status_shows_shards_and_slot_coverage(sc):
    run = sc.playbook("cluster_status")
    assert_ok(run)
    for k in range(3):
        assert f"{f'{NAME}-{2 * k}':<20} {'primary':<8} {'running':<10} " in run.output
        assert f"{f'{NAME}-{2 * k + 1}':<20} {'replica':<8} {'streaming':<10} " in run.output
    assert "cluster_state: ok; slots covered: 16384/16384; shards: 3;" in " ".join(run.output.split())


def test_health_passes_with_every_slot_covered(sc):
    run = sc.playbook("cluster_health")
    assert_unchanged(run)
    assert f"{NAME} is healthy" in run.output


def test_failover_is_refused_while_every_primary_answers(sc):
    run = sc.playbook("failover")
    assert run.rc != 0
    assert "every shard's primary answers" in run.output
    run = sc.playbook("failover", "-e", f"target={NAME}-3")
    assert run.rc != 0
    assert f"primary {NAME}-2 of shard 1 still answers" in run.output
    assert_whole(sc, 3)


def test_switchover_of_one_shard(sc):
    old, new = primary_of_shard(sc, 1)
    run = sc.playbook("switchover", "-e", f"target={new}", "-vvv")
    assert_ok(run)
    wait_for(lambda: primary_of_shard(sc, 1) == (new, old), timeout=60)
    assert shards(sc, f"{NAME}-0")[new] == old
    assert_whole(sc, 3)
    assert_every_key(sc)


def test_failover_after_a_primary_is_killed(sc):
    old, new = primary_of_shard(sc, 2)
    subprocess.run(["podman", "kill", old], check=True, capture_output=True, env=PODMAN_ENV)
    run = sc.playbook("failover", "-vvv")
    assert_ok(run)
    view = nodes(sc, f"{NAME}-0")
    assert view[new]["role"] == "master" and view[new]["slots"] > 0
    assert view[old]["failed"]
    assert_every_key(sc)
    # The old primary comes back as its former replica's replica, and apply finds it so.
    subprocess.run(["podman", "start", old], check=True, capture_output=True, env=PODMAN_ENV)
    wait_for(lambda: nodes(sc, old)[old]["role"] == "slave", timeout=120)
    run = sc.playbook("cluster_apply")
    assert_ok(run)
    assert shards(sc, f"{NAME}-0")[new] == old
    wait_for(lambda: ask(sc, old, "DBSIZE") == ask(sc, new, "DBSIZE"), timeout=30)
    assert_whole(sc, 3)
    assert_every_key(sc)


# About five minutes (a fourth shard, slots moved there and back): `make e2e-slow`, not `make test`.
@pytest.mark.slow
def test_scale_out_to_four_shards_and_back(sc):
    rewrite(sc, sharding={"shards": 4, "replicasPerShard": 1})
    run = sc.playbook("cluster_apply", "-vvv")
    assert_ok(run)
    assert len(addresses(sc)) == 8
    assert_whole(sc, 4)
    assert ask(sc, primary_of_shard(sc, 3)[0], "DBSIZE") > 0  # keys moved with their slots
    assert_every_key(sc)
    rewrite(sc, sharding={"shards": 3, "replicasPerShard": 1})
    run = sc.playbook("cluster_apply", "-vvv")
    assert_ok(run)
    assert sorted(addresses(sc)) == sorted(f"{NAME}-{i}" for i in range(6))
    assert_whole(sc, 3)
    assert_every_key(sc)


def layout(cluster: Cluster, replicas: int, shard_count: int = 3) -> dict[str, list[str]]:
    """The cluster whole as every member sees it, each primary with `replicas` replicas: primary -> its replicas."""
    members = addresses(cluster)
    for member in members:
        info = cluster_info(cluster, member)
        assert (info["cluster_state"], info["cluster_slots_assigned"], info["cluster_slots_ok"]) == (
            "ok",
            "16384",
            "16384",
        )
        assert (info["cluster_size"], info["cluster_known_nodes"]) == (str(shard_count), str(len(members)))
    view = nodes(cluster, next(iter(members)))
    assert set(view) == set(members) and not any(node["failed"] for node in view.values())
    primaries = [name for name, node in view.items() if node["role"] == "master"]
    assert len(primaries) == shard_count and sum(view[name]["slots"] for name in primaries) == 16384
    by_id = {node["id"]: name for name, node in view.items()}
    shard_map = {
        primary: sorted(n for n, node in view.items() if by_id.get(node["master"]) == primary) for primary in primaries
    }
    assert all(len(shard) == replicas for shard in shard_map.values()), shard_map
    return shard_map


def assert_replicas_have_their_primaries_keys(cluster: Cluster, shard_map: dict[str, list[str]]) -> None:
    for primary, replicas in shard_map.items():
        for replica in replicas:
            wait_for(lambda p=primary, r=replica: ask(cluster, r, "DBSIZE") == ask(cluster, p, "DBSIZE"), timeout=30)


def test_member_replace_of_a_primary_fails_its_shard_over_first(sc):
    old, heir = primary_of_shard(sc, 0)
    before = set(addresses(sc))
    keys_before = sum(ask(sc, primary, "DBSIZE") for primary in layout(sc, 1))
    writer = ClusterWriter(sc, 100_000)
    writer.start()
    time.sleep(1)
    run = sc.playbook("member_replace", "-e", f"member={old}", "-vvv")
    time.sleep(1)
    acked = writer.stop()
    print(
        f"member_replace: {len(acked)} writes acknowledged, "
        f"longest gap {writer.longest_gap():.2f}s, errors {writer.errors}"
    )
    assert_ok(run)
    (new,) = set(addresses(sc)) - before
    assert set(addresses(sc)) == before - {old} | {new}
    # A replica of the shard took it over (no slot moved), the other follows it; the old node is forgotten.
    shard_map = layout(sc, 1)
    assert {heir, new} in [{primary, *replicas} for primary, replicas in shard_map.items()]
    assert_replicas_have_their_primaries_keys(sc, shard_map)
    assert_every_key(sc)
    assert len(acked) > 100
    # Every acknowledged write is there. Without an error every SET (a new key each) was
    # acknowledged, so the key count says it exactly; otherwise each key is read back.
    if writer.errors:
        assert missing_in_cluster(sc, acked) == []
    else:
        assert sum(ask(sc, primary, "DBSIZE") for primary in shard_map) - keys_before == len(acked)
        assert missing_in_cluster(sc, [*acked[::250], acked[-1]]) == []
    # The client never saw the cluster down (every slot served throughout).
    assert not {"CLUSTERDOWN", "ConnectionError"} & set(writer.errors), writer.errors


# About ten minutes (nine members applied, then six): `make e2e-slow`, not `make test`.
@pytest.mark.slow
def test_replicas_per_shard_up_to_two_and_back_to_one(sc):
    primaries = set(layout(sc, 1))
    rewrite(sc, sharding={"shards": 3, "replicasPerShard": 2})
    run = sc.playbook("cluster_apply")
    assert_ok(run)
    assert len(addresses(sc)) == 9
    shard_map = layout(sc, 2)
    assert set(shard_map) == primaries  # a new replica in every shard, no primary moved
    assert_replicas_have_their_primaries_keys(sc, shard_map)
    assert_unchanged(sc.playbook("cluster_apply"))
    rewrite(sc, sharding={"shards": 3, "replicasPerShard": 1})
    run = sc.playbook("cluster_apply")
    assert_ok(run)
    assert len(addresses(sc)) == 6
    shard_map = layout(sc, 1)
    assert set(shard_map) == primaries  # one replica left each shard, never a primary
    assert_replicas_have_their_primaries_keys(sc, shard_map)
    assert_every_key(sc)


def slot_ranges(cluster: Cluster) -> dict[tuple[int, int], str]:
    """(first, last) slot -> the address of the primary serving it, from CLUSTER SLOTS."""
    answer = ask(cluster, next(iter(addresses(cluster))), "CLUSTER", "SLOTS")
    return {(low, high): primary[0] for low, high, primary, *_ in answer}


def repository(cluster: Cluster, script: str) -> str:
    return subprocess.run(
        ["podman", "exec", f"{cluster.name}-repo", "bash", "-c", script],
        check=True,
        env=PODMAN_ENV,
        capture_output=True,
        text=True,
    ).stdout


def test_backup_takes_one_snapshot_per_shard_from_its_replica(sc):
    client = ClusterClient(sc)
    try:
        client.call("app:backup-marker", "SET", "app:backup-marker", "in-the-snapshot")
    finally:
        client.close()
    replicas = {addresses(sc)[r] for shard in layout(sc, 1).values() for r in shard}
    ranges = slot_ranges(sc)
    run = sc.playbook("backup")
    assert_ok(run)
    assert "shards: 3" in run.output
    newest = repository(sc, "cd /srv/data/backup && ls -1d *Z | tail -n 1").strip()
    files = repository(sc, f"cd /srv/data/backup/{newest} && ls -1 && head -c 9 shard-0.rdb && echo && cat *.slots")
    lines = files.splitlines()
    names, magic, slots = lines[:6], lines[6], lines[7:]
    assert names == [f"shard-{n}.{ext}" for n in range(3) for ext in ("rdb", "slots")]
    assert magic == "REDIS0010"
    # Each shard's file lists the slot ranges its primary serves, and the snapshot came from its replica.
    backed = {tuple(map(int, r.split("-"))) if "-" in r else (int(r), int(r)) for line in slots for r in line.split()}
    assert backed == set(ranges)
    sources = repository(sc, "journalctl -u trove-backup.service --no-pager -o cat | grep -o ' from [0-9.]*$'")
    assert {line.split()[-1] for line in sources.splitlines()[-3:]} <= replicas


@pytest.mark.slow
def test_restore_into_a_new_sharded_cluster_puts_every_shard_on_its_slots(sc, tmp_path_factory, request):
    """Each shard's snapshot into the primary that owns the same slot ranges in a new cluster."""
    client = ClusterClient(sc, "admin")
    try:
        assert_ok(sc.playbook("backup"))
        expected = sum(ask(sc, primary, "DBSIZE") for primary in layout(sc, 1))
        client.call("app:after-snapshot", "SET", "app:after-snapshot", "1")
    finally:
        client.close()
    ranges = slot_ranges(sc)
    target = restore_target(
        request, tmp_path_factory, sc, "redis-sharded.yml", f"{NAME}-r", sharding={"shards": 4, "replicasPerShard": 0}
    )
    refused = target.playbook("restore", "-e", f"source={NAME}")
    assert refused.rc != 0
    said = " ".join(refused.output.split())
    assert "spec.sharding.shards: 4, but backup " in said and "set spec.sharding.shards to 3" in said
    target.purge()
    rewrite(target, sharding={"shards": 3, "replicasPerShard": 0})
    run = target.playbook("restore", "-e", f"source={NAME}")
    assert_ok(run)
    said = " ".join(run.output.split())
    assert f"restored {NAME}-r from {NAME}: backup " in said and f"{expected} keys" in said
    shard_map = layout(target, 0)
    restored = slot_ranges(target)
    assert set(restored) == set(ranges)  # the same slot ranges, one shard each
    assert len(set(restored.values())) == 3
    assert sum(ask(target, primary, "DBSIZE") for primary in shard_map) == expected
    assert_every_key(target)
    client = ClusterClient(target, "admin")
    try:
        assert client.call("app:backup-marker", "GET", "app:backup-marker") == "in-the-snapshot"
        assert client.call("app:after-snapshot", "GET", "app:after-snapshot") is None
    finally:
        client.close()


def test_no_secret_in_cluster_operations_output_or_member_logs(sc):
    """The redis-cli --cluster calls get the admin password on stdin: not in -vvv output, ps or the journal."""
    secrets = secrets_in(sc.home / "secrets" / sc.name) | secrets_in(sc.home / "ssh")
    assert sum(label.startswith("password of ") for label in secrets.values()) >= 4
    # create, switchover, failover and member_replace ran at -vvv (and the scaling applies under -m slow)
    assert sum(run.output.count("\n") > 100 and "SSH: EXEC" in run.output for run in sc.runs) >= 4
    found = [leak for run in sc.runs for leak in leaks(run.output, secrets, "output")]
    for member in addresses(sc):
        found += leaks(member_logs(member), secrets, member)
    assert found == []
