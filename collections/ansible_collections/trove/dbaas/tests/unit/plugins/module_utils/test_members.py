from __future__ import annotations

import pytest
from ansible_collections.trove.dbaas.plugins.module_utils import _members


def test_plan_names_members_in_placement_order():
    placement = [{"backend": "container", "count": 2}, {"backend": "nova", "count": 1}]
    assert _members.plan_members("pg", placement) == [
        {"name": "pg-0", "placement": 0, "backend": "container"},
        {"name": "pg-1", "placement": 0, "backend": "container"},
        {"name": "pg-2", "placement": 1, "backend": "nova"},
    ]


def test_free_addresses_skip_used_and_reserved_ones():
    got = _members.free_addresses("10.1.0.0/24", ["10.1.0.10", "10.1.0.11"], 2)
    assert got == ["10.1.0.12", "10.1.0.13"]


def test_free_addresses_start_where_the_seed_says_and_wrap():
    a = _members.free_addresses("10.1.0.0/24", [], 3, "cluster-a")
    b = _members.free_addresses("10.1.0.0/24", [], 3, "cluster-b")
    assert a == _members.free_addresses("10.1.0.0/24", [], 3, "cluster-a")
    assert not set(a) & set(b)
    small = _members.free_addresses("10.1.0.0/28", [], 5, "x")
    assert sorted(small, key=lambda s: int(s.rsplit(".", 1)[1])) == [f"10.1.0.{n}" for n in range(10, 15)]


def test_free_addresses_refuse_a_full_subnet():
    with pytest.raises(ValueError, match="has 4 free addresses, 5 needed"):
        _members.free_addresses("10.1.0.0/28", ["10.1.0.14"], 5)


def test_podman_members_read_labels_and_sort_by_index():
    ps = [
        {
            "Names": ["c-10"],
            "State": "running",
            "Id": "b",
            "Labels": {"trove.dbaas/cluster": "c", "trove.dbaas/member": "c-10", "trove.dbaas/address": "10.0.0.20"},
        },
        {
            "Names": ["c-2"],
            "State": "exited",
            "Id": "a",
            "Labels": {
                "trove.dbaas/cluster": "c",
                "trove.dbaas/member": "c-2",
                "trove.dbaas/address": "10.0.0.12",
                "trove.dbaas/placement": "1",
            },
        },
        {"Names": ["other"], "State": "running", "Id": "z", "Labels": {}},
    ]
    members = _members.podman_members(ps)
    assert [(m["name"], m["state"], m["placement"]) for m in members] == [("c-2", "exited", 1), ("c-10", "running", 0)]


def _existing(*names: str, placement: int = 0) -> list[dict]:
    return [{"name": n, "placement": placement} for n in names]


def test_plan_keeps_existing_members_and_scales_down_from_the_highest_index():
    placement = [{"backend": "container", "count": 2}]
    plan = _members.plan_members("pg", placement, _existing("pg-0", "pg-1", "pg-2"))
    assert [m["name"] for m in plan] == ["pg-0", "pg-1"]


def test_plan_scales_up_with_fresh_names():
    placement = [{"backend": "container", "count": 4}]
    plan = _members.plan_members("pg", placement, _existing("pg-0", "pg-2"))
    assert [m["name"] for m in plan] == ["pg-0", "pg-2", "pg-3", "pg-4"]


def test_plan_replaces_a_retired_member_with_a_new_name():
    placement = [{"backend": "container", "count": 3}]
    plan = _members.plan_members("pg", placement, _existing("pg-0", "pg-1", "pg-2"), retire=["pg-1"])
    assert [m["name"] for m in plan] == ["pg-0", "pg-2", "pg-3"]


def server(name: str, status: str, addresses: dict, **metadata: str) -> dict:
    return {"id": f"id-{name}", "name": name, "status": status, "addresses": addresses, "metadata": metadata}


def test_nova_members_take_the_tenant_address_and_the_management_one_for_ssh():
    fixed = {"OS-EXT-IPS:type": "fixed", "version": 4}
    servers = [
        server(
            "db-1",
            "SHUTOFF",
            {"tenant": [{"addr": "fd00::5", **fixed, "version": 6}, {"addr": "10.0.0.6", **fixed}], "mgmt": []},
            **{"trove.dbaas.cluster": "db", "trove.dbaas.member": "db-1", "trove.dbaas.placement": "1"},
        ),
        server(
            "db-0",
            "ACTIVE",
            {
                "tenant": [{"addr": "10.0.0.5", **fixed}, {"addr": "203.0.113.9", "OS-EXT-IPS:type": "floating"}],
                "mgmt": [{"addr": "192.168.9.5", **fixed}],
            },
            **{"trove.dbaas.cluster": "db", "trove.dbaas.member": "db-0", "trove.dbaas.role": "repository"},
        ),
        server("other", "ACTIVE", {}),
    ]
    got = _members.nova_members(servers, "tenant", "mgmt")
    assert [(m["name"], m["address"], m["ssh_address"], m["state"], m["placement"], m["role"]) for m in got] == [
        ("db-0", "10.0.0.5", "192.168.9.5", "running", 0, "repository"),
        ("db-1", "10.0.0.6", "10.0.0.6", "stopped", 1, "database"),
    ]
    assert got[0]["backend"] == "nova" and got[0]["id"] == "id-db-0"


def test_security_group_rule_matches_the_ip_version():
    assert _members.security_group_rule("10.1.2.3/16", "tcp", 5432) == {
        "protocol": "tcp",
        "port_range_min": 5432,
        "port_range_max": 5432,
        "remote_ip_prefix": "10.1.0.0/16",
        "ether_type": "IPv4",
    }
    assert _members.security_group_rule("2001:db8::/32", "tcp", 22)["ether_type"] == "IPv6"
