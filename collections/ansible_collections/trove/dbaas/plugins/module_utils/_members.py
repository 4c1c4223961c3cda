"""Member bookkeeping shared by the container backend, its filters and the inventory plugin.

Everything here is derived from live data (podman labels); nothing is stored on the controller.
"""

from __future__ import annotations

import ipaddress
import zlib
from typing import Any

LABEL = "trove.dbaas/"
# Addresses below this offset stay free for the gateway and for operators' own use.
FIRST_HOST_OFFSET = 10


def podman_members(ps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn `podman ps --all --format json` output into member records, sorted by name."""
    members = []
    for container in ps or []:
        labels = container.get("Labels") or {}
        if f"{LABEL}cluster" not in labels:
            continue
        names = container.get("Names") or [""]
        members.append(
            {
                "name": labels.get(f"{LABEL}member", names[0]),
                "cluster": labels[f"{LABEL}cluster"],
                "engine": labels.get(f"{LABEL}engine", ""),
                "backend": labels.get(f"{LABEL}backend", "container"),
                "api_version": labels.get(f"{LABEL}api-version", ""),
                "address": labels.get(f"{LABEL}address", ""),
                "network": labels.get(f"{LABEL}network", ""),
                "placement": int(labels.get(f"{LABEL}placement", 0)),
                # database, or repository for the cluster's backup repository member
                "role": labels.get(f"{LABEL}role", "database"),
                "state": container.get("State", ""),
                "id": container.get("Id", ""),
            }
        )
    return sorted(members, key=lambda m: (m["cluster"], member_index(m["name"]), m["name"]))


def member_index(name: str) -> int:
    """The number at the end of a member name (pg-demo-2 -> 2); -1 when there is none."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def free_addresses(subnet: str, used: list[str], count: int, seed: str = "") -> list[str]:
    """`count` host addresses of `subnet` that are not in `used`.

    The search starts at an offset derived from `seed` (the cluster name) and wraps around, so
    clusters created at the same time on one network look in different places.
    """
    network = ipaddress.ip_network(subnet, strict=False)
    hosts = list(network.hosts())[FIRST_HOST_OFFSET - 1 :]
    taken = {ipaddress.ip_address(a) for a in used if a}
    start = zlib.crc32(seed.encode()) % len(hosts) if seed and hosts else 0
    free = [str(a) for a in hosts[start:] + hosts[:start] if a not in taken][:count]
    if len(free) < count:
        raise ValueError(f"subnet {subnet} has {len(free)} free addresses, {count} needed")
    return free


def plan_members(
    cluster: str,
    placement: list[dict[str, Any]],
    existing: list[dict[str, Any]] | None = None,
    retire: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The members the cluster should have, per placement entry.

    Existing members are kept (lowest index first) up to each entry's count, except those in
    `retire`; missing ones get new names `<cluster>-<n>` with `n` above every index in use, so a
    retired member's name is never reused while it exists. A new cluster gets 0..members-1.
    """
    existing, retire = existing or [], set(retire or [])
    used = [member_index(m["name"]) for m in existing]
    next_index = max(used, default=-1) + 1
    plan = []
    for entry_no, entry in enumerate(placement):
        keep = sorted(
            (m for m in existing if int(m.get("placement", 0)) == entry_no and m["name"] not in retire),
            key=lambda m: member_index(m["name"]),
        )[: int(entry["count"])]
        plan += [{"name": m["name"], "placement": entry_no, "backend": entry["backend"]} for m in keep]
        new_indexes = range(next_index, next_index + int(entry["count"]) - len(keep))
        plan += [{"name": f"{cluster}-{i}", "placement": entry_no, "backend": entry["backend"]} for i in new_indexes]
        next_index = new_indexes.stop
    return plan


NOVA_STATES = {"ACTIVE": "running", "SHUTOFF": "stopped"}
# Nova metadata keys allow no "/" (^[a-zA-Z0-9-_:. ]{1,255}$): the podman labels' names with a dot.
METADATA = "trove.dbaas."


def nova_members(servers: list[dict[str, Any]], network: str, management_network: str = "") -> list[dict[str, Any]]:
    """Turn OpenStack server records (openstack.cloud.server_info) into member records, sorted by name.

    `address` is the member's fixed address on the tenant network (replication and clients);
    `ssh_address` the one on the management network the controller reaches, when there is one.
    The networks come from the servers' metadata, else from the arguments.
    """

    def fixed_address(server: dict[str, Any], name: str) -> str:
        for entry in (server.get("addresses") or {}).get(name) or []:
            if entry.get("OS-EXT-IPS:type", "fixed") == "fixed" and entry.get("version", 4) == 4:
                return str(entry.get("addr", ""))
        return ""

    members = []
    for server in servers or []:
        metadata = server.get("metadata") or {}
        if f"{METADATA}cluster" not in metadata:
            continue
        tenant = metadata.get(f"{METADATA}network", network)
        management = metadata.get(f"{METADATA}management-network", management_network or tenant)
        address = fixed_address(server, tenant)
        status = str(server.get("status") or "")
        members.append(
            {
                "name": metadata.get(f"{METADATA}member", server.get("name", "")),
                "cluster": metadata[f"{METADATA}cluster"],
                "engine": metadata.get(f"{METADATA}engine", ""),
                "backend": metadata.get(f"{METADATA}backend", "nova"),
                "api_version": metadata.get(f"{METADATA}api-version", ""),
                "address": address,
                "ssh_address": fixed_address(server, management) or address,
                "network": tenant,
                "placement": int(metadata.get(f"{METADATA}placement", 0)),
                "role": metadata.get(f"{METADATA}role", "database"),
                "state": NOVA_STATES.get(status, status.lower()),
                "id": server.get("id", ""),
            }
        )
    return sorted(members, key=lambda m: (m["cluster"], member_index(m["name"]), m["name"]))


def security_group_rule(cidr: str, protocol: str, port: int) -> dict[str, Any]:
    """An ingress rule of openstack.cloud.security_group for one port from one network."""
    network = ipaddress.ip_network(cidr, strict=False)
    return {
        "protocol": protocol,
        "port_range_min": int(port),
        "port_range_max": int(port),
        "remote_ip_prefix": str(network),
        "ether_type": f"IPv{network.version}",
    }
