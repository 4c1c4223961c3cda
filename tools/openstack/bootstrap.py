"""Registers the local cloud's catalog and creates what the backends' tests use.

`catalog STATE`: service project and users, services and endpoints (keystone must be up).
`resources STATE`: the trove-dbaas project's flavor, image, networks, an available fake ironic node,
then clouds.yaml.
Run by harness.sh with the services' venv; passwords come from STATE/secrets.env.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import openstack
import yaml

HOST = os.environ.get("HARNESS_HOST", "127.0.0.1")
KEYSTONE = f"http://{HOST}:5000/v3"
ENDPOINTS = {  # service user / catalog name: (type, URL)
    "placement": ("placement", f"http://{HOST}:8778"),
    "glance": ("image", f"http://{HOST}:9292"),
    "neutron": ("network", f"http://{HOST}:9696"),
    "nova": ("compute", f"http://{HOST}:8774/v2.1"),
    "ironic": ("baremetal", f"http://{HOST}:6385"),
}
PROJECT = "trove-dbaas"  # the service project the database members live in
TENANT = "tenant-demo"  # a tenant whose network the members also join
FLAVOR = "trove.small"
NODE = "fake-node-1"  # an ironic node of the fake-hardware type, left available
IMAGE = "trove-dbaas-test"
NETWORKS = {  # name: (owner project, CIDR)
    "trove-mgmt": (PROJECT, "10.20.0.0/24"),
    "tenant-net": (TENANT, "10.30.0.0/24"),
}


def secrets(state: Path) -> dict[str, str]:
    lines = (state / "secrets.env").read_text().split()
    return dict(line.split("=", 1) for line in lines)


def cloud(user: str, password: str, project: str) -> dict:
    return {
        "auth": {
            "auth_url": KEYSTONE,
            "username": user,
            "password": password,
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": "RegionOne",
        "interface": "public",
        "identity_api_version": 3,
    }


def admin(state: Path) -> openstack.connection.Connection:
    return openstack.connect(**cloud("admin", secrets(state)["ADMIN_PASSWORD"], "admin"))


def ensure(find, create, name: str, **attrs):
    return find(name, ignore_missing=True) or create(name=name, **attrs)


def user(identity, name: str, password: str, project, roles: list) -> None:
    account = ensure(identity.find_user, identity.create_user, name, domain_id="default", password=password)
    for role in roles:
        identity.assign_project_role_to_user(project, account, role)


def catalog(state: Path) -> None:
    conn, pw = admin(state), secrets(state)
    identity = conn.identity
    # keystonemiddleware accepts a service token (X-Service-Token) only with the "service" role.
    ensure(identity.find_role, identity.create_role, "service")
    roles = {role: identity.find_role(role) for role in ("admin", "member", "service")}
    service = ensure(identity.find_project, identity.create_project, "service", domain_id="default")
    for name, (kind, url) in ENDPOINTS.items():
        user(identity, name, pw["SERVICE_PASSWORD"], service, [roles["admin"], roles["service"]])
        entry = ensure(identity.find_service, identity.create_service, name, type=kind)
        for interface in ("public", "internal", "admin"):
            identity.create_endpoint(service_id=entry.id, interface=interface, url=url, region_id="RegionOne")
    trove, _ = (
        ensure(identity.find_project, identity.create_project, name, domain_id="default") for name in (PROJECT, TENANT)
    )
    user(identity, PROJECT, pw["TROVE_PASSWORD"], trove, [roles["member"]])


def resources(state: Path) -> None:
    conn, pw = admin(state), secrets(state)
    ensure(conn.compute.find_flavor, conn.compute.create_flavor, FLAVOR, vcpus=1, ram=1024, disk=10)
    if not conn.image.find_image(IMAGE):
        # Nova's fake driver never boots it: a small raw blob is enough.
        conn.create_image(
            IMAGE, data=b"\0" * 1024 * 1024, disk_format="raw", container_format="bare", visibility="public", wait=True
        )
    projects = {name: conn.identity.find_project(name) for name in (PROJECT, TENANT)}
    for name, (owner, cidr) in NETWORKS.items():
        network = ensure(
            conn.network.find_network,
            conn.network.create_network,
            name,
            project_id=projects[owner].id,
        )
        if not network.subnet_ids:
            conn.network.create_subnet(
                name=name, network_id=network.id, project_id=projects[owner].id, ip_version=4, cidr=cidr
            )
        if owner != PROJECT and not list(conn.network.rbac_policies(object_id=network.id)):
            conn.network.create_rbac_policy(
                object_type="network",
                object_id=network.id,
                action="access_as_shared",
                target_project_id=projects[PROJECT].id,
            )
    if not conn.baremetal.find_node(NODE):
        node = conn.baremetal.create_node(name=NODE, driver="fake-hardware", resource_class="baremetal.small")
        conn.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=120)
        conn.baremetal.set_node_provision_state(node, "provide", wait=True, timeout=120)
    clouds = {
        "clouds": {
            "trove-local": cloud(PROJECT, pw["TROVE_PASSWORD"], PROJECT),
            "trove-local-admin": cloud("admin", pw["ADMIN_PASSWORD"], "admin"),
        }
    }
    path = state / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(clouds, sort_keys=False))


if __name__ == "__main__":
    {"catalog": catalog, "resources": resources}[sys.argv[1]](Path(sys.argv[2]))
