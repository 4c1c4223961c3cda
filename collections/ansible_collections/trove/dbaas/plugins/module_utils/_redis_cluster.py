"""Redis Cluster planning for topology sharded: shards from member names, CLUSTER NODES, join plans.

Pure functions over what the members answer (CLUSTER NODES, CLUSTER MYID): the redis role reads the
members, these decide what to do, and redis-cli does it. Nothing is stored on the controller.

A new cluster's shards are blocks of members in member-index order: with R replicas per shard,
shard k is the members k*(1+R) .. k*(1+R)+R. From then on a shard is what the cluster says (a
primary owning slots and its replicas): a replacement joins the shard of the member it replaces, a
raised replicasPerShard adds a new member to every shard, and new shards are formed from new
members in blocks. Which member of a shard is primary moves on failover.
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
    return {"create": [], "add_primaries": [], "add_replicas": [], "replicate": [], "rebalance": False}


def node_names(members: list[dict[str, Any]], view: list[dict[str, Any]], ids: dict[str, str]) -> dict[str, str]:
    """Node id -> member name: by CLUSTER MYID for members that answer, else by address."""
    by_id = {node_id: name for name, node_id in ids.items()}
    by_address = {m["address"]: m["name"] for m in members if m["name"] not in ids}
    out: dict[str, str] = {}
    for node in sorted(view, key=lambda node: node["failed"]):
        name = by_id.get(node["id"]) or by_address.get(node["address"])
        if name and name not in out.values():
            out[node["id"]] = name
    return out


def by_index(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: (member_index(name), name))


def cluster_shards(
    members: list[dict[str, Any]], view: list[dict[str, Any]], ids: dict[str, str] | None = None
) -> list[list[str]]:
    """The shards as the cluster has them: [[primary, replicas...], ...], members only.

    A shard is a primary that owns slots (failed or not) and the members that replicate it. Shards
    are numbered by their lowest member index, so the numbering survives failovers and replacements.
    """
    names = node_names(members, view, ids or {})
    shards = []
    for node in view:
        if node["role"] != "primary" or not node["slot_count"] or node["id"] not in names:
            continue
        replicas = [
            names[other["id"]]
            for other in view
            if other["role"] == "replica" and other["master_id"] == node["id"] and other["id"] in names
        ]
        shards.append([names[node["id"]], *by_index(replicas)])
    return sorted(shards, key=lambda shard: min(member_index(name) for name in shard))


def join_plan(
    members: list[dict[str, Any]],
    replicas: int,
    view: list[dict[str, Any]],
    ids: dict[str, str],
    *,
    shards: int = 0,
    retiring: list[str] | None = None,
) -> dict[str, Any]:
    """What brings the members into the cluster that `view` (a member's CLUSTER NODES) describes.

    `members` are {name, address}, retiring ones included; `ids` maps member name -> its CLUSTER
    MYID (members that answer); `shards` is the number of shards wanted (0: as many as there are).
    The shards the cluster has stay what they are (see cluster_shards); each keeps its primary and
    1 + `replicas` members that stay. Members of no shard (new ones, a primary back without its
    slots), the members a shard has too many of, and those of shards beyond `shards` go, lowest
    index first, to the shards short of members (a retiring member's shard, replicasPerShard
    raised), then form new shards in blocks. Returns {create, add_primaries, add_replicas,
    replicate, rebalance} where
    - create: addresses of the first member of every shard, when no node owns a slot yet (new cluster);
    - add_primaries: names of members that join empty as the primary of a shard new to the cluster;
    - add_replicas: [{name, master}] members that join as a replica of `master` (a member name);
    - replicate: [{name, master}] members in the cluster that must follow another primary;
    - rebalance: a shard's primary owns no slot (new shards), so slots must move to it.
    Members that do not answer are left where they are.
    """
    retiring_names = set(retiring or [])
    address_of = {m["name"]: m["address"] for m in members}
    staying = by_index([m["name"] for m in members if m["name"] not in retiring_names])
    size = int(replicas) + 1
    plan = empty_join_plan()
    if not any(node["slot_count"] for node in view):
        groups = [group for group in shard_groups(staying, replicas) if all(name in ids for name in group)]
        plan["create"] = [address_of[group[0]] for group in groups]
        return plan
    by_id = {node["id"]: node for node in view}
    joined = {name for name in staying if ids.get(name) in by_id and not by_id[ids[name]]["failed"]}
    current = cluster_shards(members, view, ids)
    wanted = int(shards) or len(current)

    def stays(shard: list[str]) -> list[str]:
        return [name for name in shard if name not in retiring_names]

    ranked = sorted(range(len(current)), key=lambda number: (-len(stays(current[number])), number))
    kept = sorted(ranked[:wanted])
    placed = {name for shard in current for name in shard}
    free = [name for name in staying if name in ids and name not in placed]
    targets = []
    for number, shard in enumerate(current):
        mine = stays(shard)
        if number not in kept:
            free += [name for name in mine if name in ids]
            continue
        # the primary first, then the lowest index; what does not fit may move (if it answers)
        extra = [name for name in mine[size:] if name in ids]
        targets.append([shard[0], [name for name in mine if name not in extra]])
        free += extra
    free = by_index(free)

    def follow(name: str, master: str) -> None:
        node = by_id.get(ids.get(name, ""))
        if name not in joined:
            plan["add_replicas"].append({"name": name, "master": master})
        elif node["role"] != "replica" or node["master_id"] != ids.get(master):
            plan["replicate"].append({"name": name, "master": master})

    for master, mine in targets:
        while len(mine) < size and free:
            mine.append(free.pop(0))
            follow(mine[-1], master)
    while free and len(targets) < wanted:
        group, free = free[:size], free[size:]
        targets.append([group[0], group])
        if group[0] not in joined:
            plan["add_primaries"].append(group[0])
        plan["rebalance"] = True
        for name in group[1:]:
            follow(name, group[0])
    return plan


def retire_plan(view: list[dict[str, Any]], retiring: list[str], staying: list[str] | None = None) -> dict[str, Any]:
    """How to take the nodes at the `retiring` addresses out: {failover, empty, delete}.

    - failover: addresses of replicas that stay and take over from a retiring primary of their
      shard (CLUSTER FAILOVER: the shard stays, no key moves), one per such primary;
    - empty: ids of retiring primaries that own slots and have no replica that stays (the shard
      leaves: its slots move to the primaries that stay);
    - delete: ids of the retiring nodes, replicas first, so no primary is left without the
      replica it had while it empties.
    """
    nodes = [node for node in view if node["address"] in retiring]
    plan: dict[str, Any] = {"failover": [], "empty": [], "delete": []}
    for node in nodes:
        if node["role"] != "primary" or not node["slot_count"]:
            continue
        heirs = [
            other["address"]
            for other in view
            if other["role"] == "replica"
            and other["master_id"] == node["id"]
            and other["address"] in (staying or [])
            and other["linked"]
            and not other["failed"]
        ]
        if heirs:
            plan["failover"].append(min(heirs))
        else:
            plan["empty"].append(node["id"])
    plan["delete"] = [node["id"] for node in sorted(nodes, key=lambda node: node["role"] != "replica")]
    return plan


def forget_plan(view: list[dict[str, Any]], addresses: list[str]) -> list[str]:
    """Ids of nodes the cluster still lists that are no member (gone after a scale-down or replace)."""
    return [node["id"] for node in view if not node["myself"] and node["address"] not in addresses]


def status(members: list[dict[str, Any]], replicas: int, views: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per-member shard, role and slots, and the cluster summary, from every answering member's view.

    `views` maps member name -> its parsed CLUSTER NODES (members that answer); each member's own
    line (myself) gives its role. The slot coverage comes from the view of the first answering member.
    """
    names = [m["name"] for m in members]
    first = next((views[name] for name in names if views.get(name)), [])
    owning = next((views[name] for name in names if any(node["slot_count"] for node in views.get(name, []))), [])
    groups = cluster_shards(members, owning) or shard_groups(names, replicas)
    shards = {name: number for number, group in enumerate(groups) for name in group}
    per_member = {}
    for name in names:
        mine = next((node for node in views.get(name, []) if node["myself"]), None)
        per_member[name] = {
            "shard": shards.get(name, "-"),
            "role": mine["role"] if mine else "-",
            "slots": mine["slot_count"] if mine else 0,
        }
    primaries = [name for name in names if per_member[name]["role"] == "primary" and per_member[name]["slots"]]
    return {
        "members": per_member,
        "covered": covered_slots(first),
        "shards": len(groups),
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
    # the shards the cluster has (status' shard numbers), else blocks in member-index order
    numbered: dict[Any, list[str]] = {}
    for name in members:
        numbered.setdefault(roles.get(name, {}).get("shard", "-"), []).append(name)
    groups = (
        [group for number, group in sorted((int(k), v) for k, v in numbered.items() if k != "-")]
        if all("shard" in roles.get(name, {}) for name in members)
        else shard_groups(members, replicas)
    )
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
