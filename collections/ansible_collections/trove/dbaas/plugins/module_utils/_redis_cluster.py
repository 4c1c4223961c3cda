"""Redis Cluster planning for topology sharded: shards from member names, CLUSTER NODES, join plans.

Pure functions over what the members answer (CLUSTER NODES, CLUSTER MYID): the redis role reads the
members, these decide what to do, and redis-cli does it. Nothing is stored on the controller.

Shards are fixed blocks of members in member-index order: with R replicas per shard, shard k is the
members k*(1+R) .. k*(1+R)+R. Adding a shard adds 1+R members at the end; removing one removes the
last 1+R; which member of a shard is primary is whatever the cluster says (it moves on failover).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.trove.dbaas.plugins.module_utils._members import member_index

SLOTS = 16384


def shard_groups(members: list[str], replicas: int) -> list[list[str]]:
    """Members in shard order: [[shard 0 members], [shard 1 members], ...]; the last may be short."""
    size = int(replicas) + 1
    ordered = sorted(members, key=lambda name: (member_index(name), name))
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def shard_of(members: list[str], replicas: int) -> dict[str, int]:
    """Member name -> shard number."""
    return {name: number for number, group in enumerate(shard_groups(members, replicas)) for name in group}


def parse_slots(fields: list[str]) -> list[list[int]]:
    """Slot ranges `0-5460` / `5461` from CLUSTER NODES fields; importing/migrating markers are skipped."""
    ranges = []
    for field in fields:
        if field.startswith("["):
            continue
        low, _sep, high = field.partition("-")
        ranges.append([int(low), int(high or low)])
    return ranges


def parse_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES output as records {id, address, port, flags, role, master_id, myself, failed, linked, slots}."""
    nodes = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        endpoint = fields[1].split("@", 1)[0].split(",", 1)[0]
        host, _sep, port = endpoint.rpartition(":")
        flags = fields[2].split(",")
        slots = parse_slots(fields[8:])
        nodes.append(
            {
                "id": fields[0],
                "address": host,
                "port": int(port) if port.isdigit() else 0,
                "flags": flags,
                "role": "primary" if "master" in flags else "replica" if "slave" in flags else "unknown",
                "master_id": "" if fields[3] == "-" else fields[3],
                "myself": "myself" in flags,
                "failed": "fail" in flags or "fail?" in flags or "noaddr" in flags,
                "linked": fields[7] == "connected",
                "slots": slots,
                "slot_count": sum(high - low + 1 for low, high in slots),
            }
        )
    return nodes


def covered_slots(nodes: list[dict[str, Any]]) -> int:
    """How many of the 16384 slots a primary that is not failed owns."""
    owned: set[int] = set()
    for node in nodes:
        if node["role"] == "primary" and not node["failed"]:
            for low, high in node["slots"]:
                owned.update(range(low, high + 1))
    return len(owned)


def empty_join_plan() -> dict[str, Any]:
    """A join plan with nothing to do."""
    return {"create": [], "add_primaries": [], "add_replicas": [], "replicate": [], "rebalance": False, "conflicts": []}


def join_plan(
    members: list[dict[str, Any]], replicas: int, view: list[dict[str, Any]], ids: dict[str, str]
) -> dict[str, Any]:
    """What brings the members into the cluster that `view` (a member's CLUSTER NODES) describes.

    `members` are {name, address}; `ids` maps member name -> its CLUSTER MYID (members that answer).
    Returns {create, add_primaries, add_replicas, replicate, rebalance} where
    - create: addresses of the first member of every shard, when no node owns a slot yet (new cluster);
    - add_primaries: names of members that join empty as the primary of a shard new to the cluster;
    - add_replicas: [{name, master}] members that join as a replica of `master` (a member name);
    - replicate: [{name, master}] members in the cluster that follow a primary outside their shard,
      or are a slot-less primary in a shard whose primary owns slots;
    - rebalance: a shard's primary owns no slot (new shards), so slots must move to it;
    - conflicts: members that own slots but are not their shard's primary (two slot owners in one
      shard: the shard layout changed, e.g. replicasPerShard on a running cluster); refused.
    """
    address_of = {m["name"]: m["address"] for m in members}
    names = [m["name"] for m in members]
    groups = [group for group in shard_groups(names, replicas) if all(name in ids for name in group)]
    by_id = {node["id"]: node for node in view}
    in_view = {name for name in names if ids.get(name) in by_id and not by_id[ids[name]]["failed"]}
    plan = empty_join_plan()
    if not any(node["slot_count"] for node in view):
        plan["create"] = [address_of[group[0]] for group in groups]
        return plan
    for group in groups:
        joined = [name for name in group if name in in_view]
        primaries = [name for name in joined if by_id[ids[name]]["role"] == "primary"]
        owning = [name for name in primaries if by_id[ids[name]]["slot_count"]]
        primary = (owning or primaries or [group[0]])[0]
        plan["conflicts"] += owning[1:]
        if primary not in joined:
            plan["add_primaries"].append(primary)
        if not owning:
            plan["rebalance"] = True
        for name in group:
            if name == primary:
                continue
            if name not in joined:
                plan["add_replicas"].append({"name": name, "master": primary})
                continue
            node = by_id[ids[name]]
            if node["role"] != "replica" or node["master_id"] != ids[primary]:
                plan["replicate"].append({"name": name, "master": primary})
    return plan


def retire_plan(view: list[dict[str, Any]], retiring: list[str]) -> dict[str, Any]:
    """How to take the nodes at the `retiring` addresses out: {empty: [ids of primaries owning slots], delete: [ids]}.

    Replicas are deleted before primaries, so no primary is left without the replica it had while it empties.
    """
    nodes = [node for node in view if node["address"] in retiring]
    return {
        "empty": [node["id"] for node in nodes if node["role"] == "primary" and node["slot_count"]],
        "delete": [node["id"] for node in sorted(nodes, key=lambda node: node["role"] != "replica")],
    }


def forget_plan(view: list[dict[str, Any]], addresses: list[str]) -> list[str]:
    """Ids of nodes the cluster still lists that are no member (gone after a scale-down or replace)."""
    return [node["id"] for node in view if not node["myself"] and node["address"] not in addresses]


def status(members: list[dict[str, Any]], replicas: int, views: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-member shard, role and slots, and the cluster summary, from every answering member's view.

    `views` maps member name -> its parsed CLUSTER NODES (members that answer); each member's own
    line (myself) gives its role. The slot coverage comes from the view of the first answering member.
    """
    names = [m["name"] for m in members]
    shards = shard_of(names, replicas)
    per_member = {}
    for name in names:
        mine = next((node for node in views.get(name, []) if node["myself"]), None)
        per_member[name] = {
            "shard": shards[name],
            "role": mine["role"] if mine else "-",
            "slots": mine["slot_count"] if mine else 0,
        }
    first = next((views[name] for name in names if views.get(name)), [])
    primaries = [name for name in names if per_member[name]["role"] == "primary" and per_member[name]["slots"]]
    return {
        "members": per_member,
        "covered": covered_slots(first),
        "shards": len(shard_groups(names, replicas)),
        "primaries": primaries,
    }


def failover_plan(
    members: list[str],
    replicas: int,
    roles: dict[str, dict[str, Any]],
    offsets: dict[str, Any],
    *,
    target: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Which replicas to promote (CLUSTER FAILOVER FORCE) and which primaries to fence first.

    `roles` maps members to {role, slots} (role `-` for a member that does not answer), `offsets`
    members to their replication offset. A shard whose members that
    answer include no primary owning slots is orphaned; its answering replica with the highest
    offset is promoted. A named `target` (a replica) is promoted even when its primary answers,
    but only with `force` (that primary is fenced first). Returns {promote, fence, refuse}: refuse
    is a message when nothing may be done.
    """
    states = {name: {**state, "offset": offsets.get(name, 0)} for name, state in roles.items() if state["role"] != "-"}
    force = bool(force)
    groups = shard_groups(members, replicas)
    plan: dict[str, Any] = {"promote": [], "fence": [], "refuse": ""}

    def primary(group: list[str]) -> str:
        live = [n for n in group if states.get(n, {}).get("role") == "primary" and states[n].get("slots")]
        return live[0] if live else ""

    def best_replica(group: list[str]) -> str:
        ready = [n for n in group if states.get(n, {}).get("role") == "replica"]
        return max(ready, key=lambda n: int(states[n].get("offset") or 0), default="")

    if target:
        group = next((g for g in groups if target in g), None)
        if group is None:
            plan["refuse"] = f"target: {target} is not a member; members: {', '.join(members)}"
        elif states.get(target, {}).get("role") != "replica":
            plan["refuse"] = f"target: {target} is not a replica that answers"
        elif primary(group) and not force:
            plan["refuse"] = (
                f"primary {primary(group)} of shard {groups.index(group)} still answers: use switchover.yml "
                f"-e target={target}, or pass -e force=true to fence it (stop it) and fail over"
            )
        else:
            plan["promote"] = [target]
            plan["fence"] = [primary(group)] if primary(group) else []
        return plan
    for number, group in enumerate(groups):
        if primary(group):
            continue
        candidate = best_replica(group)
        if not candidate:
            plan["refuse"] = f"shard {number} ({', '.join(group)}) has no primary and no replica that answers"
            return plan
        plan["promote"].append(candidate)
    if not plan["promote"] and all(name in states for name in members):
        plan["refuse"] = (
            "every shard's primary answers: use switchover.yml -e target=<replica>, or failover.yml "
            "-e target=<replica> -e force=true to fence that replica's primary and fail over"
        )
    return plan
