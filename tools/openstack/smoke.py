"""Smoke test of the local cloud (tools/openstack/harness.sh up) with the controller's openstacksdk.

Creates what the nova backend needs for one member: an anti-affinity server group, a security
group with rules, a port on the management and on the tenant network, a server with flavor, image,
ports, metadata, config drive and user data; waits for ACTIVE, reads everything back, deletes it.
Prints the timings as JSON; any mismatch exits non-zero.
Usage: eval "$(tools/openstack/harness.sh env)"; python tools/openstack/smoke.py
"""

from __future__ import annotations

import base64
import json
import sys
import time

import openstack

NAME = "smoke"
# Nova metadata keys match ^[a-zA-Z0-9-_:. ]{1,255}$: no "/" as in the podman labels.
METADATA = {"trove.dbaas.cluster": "smoke", "trove.dbaas.member": "smoke-1"}
USER_DATA = "#cloud-config\nhostname: smoke-1\n"


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"smoke: {what}")


def create(conn: openstack.connection.Connection, made: dict) -> None:
    group = made["group"] = conn.compute.create_server_group(name=NAME, policy="anti-affinity")
    secgroup = made["secgroup"] = conn.network.create_security_group(name=NAME, description="smoke")
    for port, cidr in ((5432, "10.30.0.0/24"), (22, "10.20.0.0/24")):
        conn.network.create_security_group_rule(
            security_group_id=secgroup.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            port_range_min=port,
            port_range_max=port,
            remote_ip_prefix=cidr,
        )
    ports = made["ports"] = []
    for net in ("trove-mgmt", "tenant-net"):
        ports.append(
            conn.network.create_port(
                name=f"{NAME}-{net}", security_group_ids=[secgroup.id], network_id=conn.network.find_network(net).id
            )
        )
    server = made["server"] = conn.compute.create_server(
        name=NAME,
        flavor_id=conn.compute.find_flavor("trove.small").id,
        image_id=conn.image.find_image("trove-dbaas-test").id,
        networks=[{"port": port.id} for port in ports],
        metadata=METADATA,
        config_drive=True,
        user_data=base64.b64encode(USER_DATA.encode()).decode(),
        scheduler_hints={"group": group.id},
    )
    conn.compute.wait_for_server(server, status="ACTIVE", wait=300)


def verify(conn: openstack.connection.Connection, made: dict) -> None:
    server = conn.compute.get_server(made["server"].id)
    check(server.status == "ACTIVE", f"server is {server.status}")
    check(server.metadata == METADATA, f"metadata read back as {server.metadata}")
    check(server.has_config_drive in (True, "True"), "no config drive")
    check(set(server.addresses) == {"trove-mgmt", "tenant-net"}, f"addresses {server.addresses}")
    group = conn.compute.get_server_group(made["group"].id)
    check(group.policy == "anti-affinity", f"server group policy {group.policy}")
    check(server.id in group.member_ids, "server not in its server group")
    rules = list(conn.network.security_group_rules(security_group_id=made["secgroup"].id))
    check({r.port_range_min for r in rules if r.direction == "ingress"} == {22, 5432}, "rules")
    for made_port in made["ports"]:
        port = conn.network.get_port(made_port.id)
        check(port.device_id == server.id, f"port {port.name} not attached")
        check(port.binding_vif_type not in ("unbound", "binding_failed"), f"{port.name} unbound")
        check(port.status == "ACTIVE", f"port {port.name} is {port.status}")


def delete(conn: openstack.connection.Connection, made: dict) -> None:
    """Deletes what `create` made, also after it failed half way."""
    if "server" in made:
        conn.compute.delete_server(made["server"])
        conn.compute.wait_for_delete(made["server"], wait=300)
    for port in made.get("ports", []):
        conn.network.delete_port(port)
    if "secgroup" in made:
        conn.network.delete_security_group(made["secgroup"])
    if "group" in made:
        conn.compute.delete_server_group(made["group"])
    check(conn.compute.find_server(NAME) is None, "server left behind")
    check(not list(conn.network.ports(name=f"{NAME}-trove-mgmt")), "port left behind")
    check(conn.network.find_security_group(NAME) is None, "security group left behind")


def main() -> None:
    conn = openstack.connect(cloud="trove-local")
    seconds = {}
    start = time.monotonic()
    made: dict = {}
    try:
        create(conn, made)
        seconds["create_to_active"] = round(time.monotonic() - start, 1)
        verify(conn, made)
    finally:
        mark = time.monotonic()
        delete(conn, made)
    seconds["delete"] = round(time.monotonic() - mark, 1)
    seconds["total"] = round(time.monotonic() - start, 1)
    print(json.dumps({"smoke": "passed", "seconds": seconds}))


if __name__ == "__main__":
    main()
