"""The nova backend against real OpenStack APIs: the local cloud of tools/openstack/harness.sh
(keystone, placement, glance, neutron, nova with the fake compute driver).

Clusters are applied and deleted through the cluster playbooks' member plays (members.yml; the
fake driver boots nothing, so no engine is converged over SSH) and cluster_delete.yml, and what
they made is read back through openstacksdk: servers, ports, security group and server group.
Run with `make openstack-test` (brings the cloud up first).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import openstack
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NAME = "os-nova"
MANAGEMENT, TENANT = "trove-mgmt", "tenant-net"
CLIENTS = ["10.30.0.0/24", "192.0.2.0/28"]


@pytest.fixture(scope="module")
def cloud():
    if not os.environ.get("OS_CLIENT_CONFIG_FILE"):
        pytest.fail("the local cloud is not up: run `make openstack-test` (or eval $(tools/openstack/harness.sh env))")
    conn = openstack.connect(cloud=os.environ.get("OS_CLOUD", "trove-local"))
    yield conn
    conn.close()


class Runner:
    def __init__(self, work: Path, name: str = NAME, **nova: object) -> None:
        self.name = name
        document = yaml.safe_load((ROOT / "examples" / "postgresql-replicated.yml").read_text())
        document["metadata"]["name"] = name
        document["spec"]["endpoint"] = {"allowedCidrs": CLIENTS}
        options = {"cloud": "trove-local", "flavor": "trove.small", "image": "trove-dbaas-test", "network": TENANT}
        document["spec"]["placement"] = [{"backend": "nova", "nova": {**options, **nova}}]
        self.spec = work / "cluster.yml"
        self.spec.write_text(yaml.safe_dump(document))
        self.env = dict(os.environ, TROVE_HOME=str(work / "home"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))

    def run(self, playbook: str, *extra: str) -> subprocess.CompletedProcess:
        argv = [str(BIN / "ansible-playbook"), playbook, "-e", f"cluster_file={self.spec}", *extra]
        return subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900, check=False)

    def members(self, *extra: str) -> list[dict]:
        """Create (members_action=present) or read (info) the members; the list the playbooks get."""
        out = self.spec.with_name("members.json")
        # The fake driver has one compute host: a strict anti-affinity group could hold one member.
        run = self.run(
            "tests/openstack/members.yml", "-e", f"members_out={out}", "-e", "host_nova_wait_for_ssh=false",
            "-e", "host_nova_server_group_policy=soft-anti-affinity", *extra,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        return json.loads(out.read_text())

    def delete(self) -> subprocess.CompletedProcess:
        return self.run("playbooks/cluster_delete.yml", "-e", f"confirm={self.name}", "-e", "purge=true")


def servers(conn) -> list:
    return sorted(
        (s for s in conn.compute.servers(details=True) if s.metadata.get("trove.dbaas.cluster") == NAME),
        key=lambda s: s.name,
    )


@pytest.fixture(scope="module")
def applied(cloud, tmp_path_factory):
    runner = Runner(tmp_path_factory.mktemp(NAME), managementNetwork=MANAGEMENT, dataVolume=False)
    runner.delete()
    members = runner.members()
    yield runner, members
    runner.delete()


def test_every_member_is_a_labelled_active_server_in_the_anti_affinity_group(cloud, applied):
    _, members = applied
    found = servers(cloud)
    assert [s.name for s in found] == [f"{NAME}-0", f"{NAME}-1", f"{NAME}-2"]
    for server in found:
        assert server.status == "ACTIVE"
        assert server.flavor["original_name"] == "trove.small"
        assert server.metadata["trove.dbaas.member"] == server.name
        assert server.metadata["trove.dbaas.engine"] == "postgresql"
        assert server.metadata["trove.dbaas.backend"] == "nova"
        assert server.metadata["trove.dbaas.api-version"] == "trove.dbaas/v1"
        assert server.metadata["trove.dbaas.role"] == "database"
    group = cloud.compute.find_server_group(NAME)
    assert group.policy == "soft-anti-affinity"
    assert sorted(group.member_ids) == sorted(s.id for s in found)
    assert [m["name"] for m in members] == [s.name for s in found]


def test_members_have_a_tenant_and_a_management_port_and_the_playbooks_get_both_addresses(cloud, applied):
    _, members = applied
    secgroup = cloud.network.find_security_group(NAME)
    networks = {cloud.network.find_network(n).id: n for n in (MANAGEMENT, TENANT)}
    for member, server in zip(members, servers(cloud), strict=True):
        ports = {networks[p.network_id]: p for p in cloud.network.ports(device_id=server.id)}
        assert set(ports) == {MANAGEMENT, TENANT}
        assert {p.name for p in ports.values()} == {f"{server.name}-tenant", f"{server.name}-management"}
        assert all(p.security_group_ids == [secgroup.id] for p in ports.values())
        assert member["address"] == ports[TENANT].fixed_ips[0]["ip_address"]
        assert member["ssh_address"] == ports[MANAGEMENT].fixed_ips[0]["ip_address"]
        assert member["state"] == "running"


def test_security_group_opens_the_database_port_to_clients_ssh_to_management_and_all_tcp_between_members(
    cloud, applied
):
    secgroup = cloud.network.find_security_group(NAME)
    rules = {
        (r.protocol, r.port_range_min, r.remote_ip_prefix, r.remote_group_id == secgroup.id)
        for r in cloud.network.security_group_rules(security_group_id=secgroup.id)
        if r.direction == "ingress"
    }
    management_cidr = cloud.network.get_subnet(cloud.network.find_network(MANAGEMENT).subnet_ids[0]).cidr
    assert rules == {
        ("tcp", 5432, CLIENTS[0], False),
        ("tcp", 5432, CLIENTS[1], False),
        ("tcp", 22, management_cidr, False),
        ("tcp", None, None, True),
    }


def test_second_apply_creates_nothing_and_info_reads_the_same_members(cloud, applied):
    runner, members = applied
    before = {s.name: s.id for s in servers(cloud)}
    assert runner.members() == members
    assert {s.name: s.id for s in servers(cloud)} == before
    assert runner.members("-e", "members_action=info") == members


def test_a_missing_network_is_refused_naming_the_field(cloud, tmp_path_factory):
    runner = Runner(tmp_path_factory.mktemp("os-bad"), "os-bad", managementNetwork="no-such-net", dataVolume=False)
    run = runner.run("tests/openstack/members.yml", "-e", "members_out=/dev/null", "-e", "host_nova_wait_for_ssh=false")
    assert run.returncode != 0
    assert "spec.placement[0].nova: network no-such-net not found in cloud trove-local" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert cloud.network.find_security_group("os-bad") is None


def test_delete_leaves_nothing_behind(cloud, applied):
    runner, _ = applied
    run = runner.delete()
    assert run.returncode == 0, run.stdout[-3000:]
    assert servers(cloud) == []
    assert [p.name for p in cloud.network.ports() if p.name.startswith(f"{NAME}-")] == []
    assert cloud.network.find_security_group(NAME) is None
    assert cloud.compute.find_server_group(NAME) is None
    # Deleting again finds nothing to do.
    assert runner.delete().returncode == 0
