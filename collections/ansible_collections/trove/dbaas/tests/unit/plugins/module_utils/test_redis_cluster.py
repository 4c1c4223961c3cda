from __future__ import annotations

from ansible_collections.trove.dbaas.plugins.filter.redis_cluster import FilterModule
from ansible_collections.trove.dbaas.plugins.module_utils import _redis_cluster as rc

NODES = """\
a0 10.0.0.10:6379@16379 myself,master - 0 0 1 connected 0-5460
a1 10.0.0.11:6379@16379 slave a0 0 1 1 connected
b0 10.0.0.12:6379@16379,b0.example master - 0 1 2 connected 5461-10922 [10923->-c0]
b1 10.0.0.13:6379@16379 slave b0 0 1 2 connected
c0 10.0.0.14:6379@16379 master,fail - 0 1 3 disconnected 10923-16383
c1 10.0.0.15:6379@16379 slave c0 0 1 3 connected
"""
MEMBERS = [{"name": f"r-{i}", "address": f"10.0.0.{10 + i}"} for i in range(6)]
IDS = {f"r-{i}": node for i, node in enumerate(["a0", "a1", "b0", "b1", "c0", "c1"])}


def view(text: str = NODES) -> list[dict]:
    return rc.parse_nodes(text)


def test_shards_are_blocks_in_member_index_order():
    names = ["r-10", "r-2", "r-0", "r-1", "r-3", "r-11"]
    assert rc.shard_groups(names, 1) == [["r-0", "r-1"], ["r-2", "r-3"], ["r-10", "r-11"]]
    assert rc.shard_groups(["x-0", "x-1", "x-2"], 0) == [["x-0"], ["x-1"], ["x-2"]]


def test_cluster_nodes_are_parsed():
    nodes = {node["id"]: node for node in view()}
    assert nodes["a0"]["myself"] and nodes["a0"]["role"] == "primary" and nodes["a0"]["slot_count"] == 5461
    assert nodes["a1"] | {"slots": None} == nodes["a1"] | {
        "address": "10.0.0.11",
        "port": 6379,
        "role": "replica",
        "master_id": "a0",
        "myself": False,
        "failed": False,
        "slots": None,
    }
    assert nodes["b0"]["address"] == "10.0.0.12"  # hostname after the comma ignored
    assert nodes["b0"]["slots"] == [[5461, 10922]]  # the migrating marker is no slot range
    assert nodes["c0"]["failed"] and not nodes["c0"]["linked"]
    assert rc.parse_nodes("") == [] and rc.parse_nodes("garbage\nERR no cluster") == []


def test_single_slots_and_coverage():
    text = "x 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-99 100 16383\n"
    assert view(text)[0]["slots"] == [[0, 99], [100, 100], [16383, 16383]]
    assert rc.covered_slots(view(text)) == 102
    # a failed primary's slots are not served
    assert rc.covered_slots(view()) == 10923


def test_a_new_cluster_is_created_from_the_first_member_of_every_shard():
    fresh = [
        rc.parse_nodes(f"{IDS[m['name']]} {m['address']}:6379@16379 myself,master - 0 0 0 connected")[0]
        for m in MEMBERS[:1]
    ]
    plan = rc.join_plan(MEMBERS, 1, fresh, IDS)
    assert plan["create"] == ["10.0.0.10", "10.0.0.12", "10.0.0.14"]
    assert not plan["add_primaries"] and not plan["add_replicas"] and not plan["rebalance"]


def test_after_create_the_replicas_join_their_shard():
    text = "\n".join(NODES.splitlines()[i] for i in (0, 2)) + "\n"
    text += "c0 10.0.0.14:6379@16379 master - 0 1 3 connected 10923-16383\n"
    plan = rc.join_plan(MEMBERS, 1, view(text), IDS)
    assert plan["create"] == [] and plan["add_primaries"] == []
    assert plan["add_replicas"] == [
        {"name": "r-1", "master": "r-0"},
        {"name": "r-3", "master": "r-2"},
        {"name": "r-5", "master": "r-4"},
    ]
    assert not plan["rebalance"] and plan["replicate"] == []


def converged() -> str:
    return NODES.replace("master,fail", "master").replace("disconnected", "connected").replace(" [10923->-c0]", "")


def test_a_converged_cluster_needs_nothing():
    plan = rc.join_plan(MEMBERS, 1, view(converged()), IDS)
    assert plan == rc.empty_join_plan()


def test_a_new_shard_joins_empty_and_gets_slots():
    members = [*MEMBERS, {"name": "r-6", "address": "10.0.0.16"}, {"name": "r-7", "address": "10.0.0.17"}]
    plan = rc.join_plan(members, 1, view(converged()), {**IDS, "r-6": "d0", "r-7": "d1"}, shards=4)
    assert plan["add_primaries"] == ["r-6"]
    assert plan["add_replicas"] == [{"name": "r-7", "master": "r-6"}]
    assert plan["rebalance"]
    # once both joined, only the slots are missing
    joined = (
        converged()
        + "d0 10.0.0.16:6379@16379 master - 0 1 4 connected\nd1 10.0.0.17:6379@16379 slave d0 0 1 4 connected\n"
    )
    plan = rc.join_plan(members, 1, view(joined), {**IDS, "r-6": "d0", "r-7": "d1"}, shards=4)
    assert plan["add_primaries"] == [] and plan["add_replicas"] == [] and plan["rebalance"]


def test_a_shard_with_a_member_that_does_not_answer_is_left_alone():
    ids = {name: node for name, node in IDS.items() if name != "r-4"}
    text = (
        NODES.replace("c1 10.0.0.15:6379@16379 slave c0", "c1 10.0.0.15:6379@16379 master -").replace(
            "c0 10.0.0.14:6379@16379 master,fail - 0 1 3 disconnected 10923-16383",
            "c0 10.0.0.14:6379@16379 slave,fail c1 0 1 3 disconnected",
        )
        + ""
    )
    text = text.replace(
        "c1 10.0.0.15:6379@16379 master - 0 1 3 connected",
        "c1 10.0.0.15:6379@16379 master - 0 1 4 connected 10923-16383",
    )
    plan = rc.join_plan(MEMBERS, 1, view(text), ids)
    assert plan == rc.empty_join_plan()


def test_an_old_primary_back_without_slots_follows_the_new_one():
    text = converged().replace(
        "c0 10.0.0.14:6379@16379 master - 0 1 3 connected 10923-16383",
        "c0 10.0.0.14:6379@16379 master - 0 1 3 connected",
    )
    text = text.replace(
        "c1 10.0.0.15:6379@16379 slave c0 0 1 3 connected",
        "c1 10.0.0.15:6379@16379 master - 0 1 4 connected 10923-16383",
    )
    plan = rc.join_plan(MEMBERS, 1, view(text), IDS)
    assert plan["replicate"] == [{"name": "r-4", "master": "r-5"}]
    assert not plan["rebalance"] and not plan["add_replicas"]


def test_retire_empties_primaries_and_deletes_replicas_first():
    plan = rc.retire_plan(view(converged()), ["10.0.0.14", "10.0.0.15"], ["10.0.0.10", "10.0.0.11"])
    assert plan == {"failover": [], "empty": ["c0"], "delete": ["c1", "c0"]}
    assert rc.retire_plan(view(converged()), []) == {"failover": [], "empty": [], "delete": []}


def test_a_retiring_primary_hands_over_to_a_replica_that_stays():
    plan = rc.retire_plan(view(converged()), ["10.0.0.14"], ["10.0.0.15"])
    assert plan == {"failover": ["10.0.0.15"], "empty": [], "delete": ["c0"]}
    # a replica that is not linked cannot take over: the shard would have to be emptied
    unlinked = converged().replace(
        "c1 10.0.0.15:6379@16379 slave c0 0 1 3 connected", "c1 10.0.0.15:6379@16379 slave c0 0 1 3 disconnected"
    )
    assert rc.retire_plan(view(unlinked), ["10.0.0.14"], ["10.0.0.15"])["empty"] == ["c0"]


def test_forget_nodes_at_no_member_address():
    assert rc.forget_plan(view(converged()), [m["address"] for m in MEMBERS[:4]]) == ["c0", "c1"]
    # a member never forgets itself
    assert rc.forget_plan(view(converged()), []) == ["a1", "b0", "b1", "c0", "c1"]


def test_status_per_member_and_coverage():
    views = {
        "r-0": view(converged()),
        "r-1": view(
            converged()
            .replace("myself,master", "master")
            .replace("a1 10.0.0.11:6379@16379 slave", "a1 10.0.0.11:6379@16379 myself,slave")
        ),
    }
    status = rc.status(MEMBERS, 1, views)
    assert status["members"]["r-0"] == {"shard": 0, "role": "primary", "slots": 5461}
    assert status["members"]["r-1"] == {"shard": 0, "role": "replica", "slots": 0}
    assert status["members"]["r-4"] == {"shard": 2, "role": "-", "slots": 0}
    assert (status["covered"], status["shards"], status["primaries"]) == (16384, 3, ["r-0"])


def roles(**kw: str) -> dict:
    out = {}
    for name, role in kw.items():
        out[name.replace("_", "-")] = {"role": role, "slots": 100 if role == "primary" else 0}
    return out


def test_failover_promotes_the_most_advanced_replica_of_an_orphaned_shard():
    names = ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"]
    states = roles(r_0="primary", r_1="replica", r_2="primary", r_3="replica", r_4="-", r_5="replica")
    plan = rc.failover_plan(names, 1, states, {"r-5": 10})
    assert plan == {"promote": ["r-5"], "fence": [], "refuse": ""}
    nine = [f"r-{i}" for i in range(9)]
    states = roles(
        r_0="-",
        r_1="replica",
        r_2="replica",
        r_3="primary",
        r_4="replica",
        r_5="replica",
        r_6="primary",
        r_7="replica",
        r_8="replica",
    )
    assert rc.failover_plan(nine, 2, states, {"r-1": 5, "r-2": 7})["promote"] == ["r-2"]


def test_failover_when_the_cluster_promoted_already_or_nothing_is_down():
    names = ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"]
    done = roles(r_0="primary", r_1="replica", r_2="primary", r_3="replica", r_4="-", r_5="primary")
    assert rc.failover_plan(names, 1, done, {}) == {"promote": [], "fence": [], "refuse": ""}
    healthy = {**done, "r-4": {"role": "replica", "slots": 0}}
    assert rc.failover_plan(names, 1, healthy, {})["refuse"].startswith("every shard's primary answers")


def test_failover_of_a_named_replica_needs_force_while_its_primary_answers():
    names = ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"]
    healthy = roles(r_0="primary", r_1="replica", r_2="primary", r_3="replica", r_4="primary", r_5="replica")
    refused = rc.failover_plan(names, 1, healthy, {}, target="r-3")
    assert refused["refuse"].startswith("primary r-2 of shard 1 still answers")
    assert rc.failover_plan(names, 1, healthy, {}, target="r-3", force=True) == {
        "promote": ["r-3"],
        "fence": ["r-2"],
        "refuse": "",
    }
    assert (
        rc.failover_plan(names, 1, healthy, {}, target="r-2", force=True)["refuse"]
        == "target: r-2 is not a replica that answers"
    )
    refused = rc.failover_plan(names, 1, healthy, {}, target="nobody")
    assert refused["refuse"].startswith("target: nobody is not a member")


def test_failover_refuses_a_shard_with_nobody_left():
    names = ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"]
    states = roles(r_0="primary", r_1="replica", r_2="primary", r_3="replica", r_4="-", r_5="-")
    assert (
        rc.failover_plan(names, 1, states, {})["refuse"]
        == "shard 2 (r-4, r-5) has no primary and no replica that answers"
    )


def test_shards_are_what_the_cluster_has_numbered_by_lowest_index():
    # after a replacement r-0 is gone: shard 0 is r-1 (now primary) and r-6
    text = converged().replace("a0 10.0.0.10:6379@16379 myself,master - 0 0 1 connected 0-5460\n", "")
    text = text.replace(
        "a1 10.0.0.11:6379@16379 slave a0 0 1 1 connected",
        "a1 10.0.0.11:6379@16379 myself,master - 0 1 5 connected 0-5460",
    )
    text += "f0 10.0.0.16:6379@16379 slave a1 0 1 5 connected\n"
    members = [*MEMBERS[1:], {"name": "r-6", "address": "10.0.0.16"}]
    assert rc.cluster_shards(members, view(text)) == [["r-1", "r-6"], ["r-2", "r-3"], ["r-4", "r-5"]]
    status = rc.status(members, 1, {"r-1": view(text)})
    assert status["members"]["r-6"]["shard"] == 0 and status["shards"] == 3


def test_a_replacement_joins_the_shard_of_the_member_it_replaces():
    members = [*MEMBERS, {"name": "r-6", "address": "10.0.0.16"}]
    ids = {**IDS, "r-6": "f0"}
    # the primary r-2 retires: r-6 follows it, then the retirement hands its slots to a replica
    plan = rc.join_plan(members, 1, view(converged()), ids, shards=3, retiring=["r-2"])
    assert plan == {**rc.empty_join_plan(), "add_replicas": [{"name": "r-6", "master": "r-2"}]}
    # a replica retires
    plan = rc.join_plan(members, 1, view(converged()), ids, shards=3, retiring=["r-5"])
    assert plan == {**rc.empty_join_plan(), "add_replicas": [{"name": "r-6", "master": "r-4"}]}
    joined = converged() + "f0 10.0.0.16:6379@16379 slave c0 0 1 3 connected\n"
    assert rc.join_plan(members, 1, view(joined), ids, shards=3, retiring=["r-5"]) == rc.empty_join_plan()


def test_more_replicas_per_shard_add_one_to_every_shard_and_fewer_keep_the_primaries():
    members = [*MEMBERS] + [{"name": f"r-{i}", "address": f"10.0.0.{10 + i}"} for i in (6, 7, 8)]
    ids = {**IDS, "r-6": "x6", "r-7": "x7", "r-8": "x8"}
    plan = rc.join_plan(members, 2, view(converged()), ids, shards=3)
    assert plan["add_replicas"] == [
        {"name": "r-6", "master": "r-0"},
        {"name": "r-7", "master": "r-2"},
        {"name": "r-8", "master": "r-4"},
    ]
    assert not plan["add_primaries"] and not plan["rebalance"] and not plan["replicate"]


def test_a_shard_that_would_lose_every_member_gets_surplus_replicas():
    # shards of three (r-0..r-2, r-3..r-5, r-6..r-8); replicasPerShard 2 -> 1 retires r-6..r-8
    text = "".join(
        f"{p}{k} 10.0.0.{10 + 3 * n + k}:6379@16379 {'master -' if k == 0 else f'slave {p}0'} 0 1 {n} connected"
        + (f" {low}-{high}" if k == 0 else "")
        + "\n"
        for n, (p, low, high) in enumerate((("a", 0, 5460), ("b", 5461, 10922), ("c", 10923, 16383)))
        for k in range(3)
    )
    members = [{"name": f"r-{i}", "address": f"10.0.0.{10 + i}"} for i in range(9)]
    ids = {f"r-{3 * n + k}": f"{p}{k}" for n, p in enumerate("abc") for k in range(3)}
    plan = rc.join_plan(members, 1, view(text), ids, shards=3, retiring=["r-6", "r-7", "r-8"])
    assert plan["replicate"] == [{"name": "r-2", "master": "r-6"}, {"name": "r-5", "master": "r-6"}]
    moved = text.replace("a2 10.0.0.12:6379@16379 slave a0", "a2 10.0.0.12:6379@16379 slave c0")
    moved = moved.replace("b2 10.0.0.15:6379@16379 slave b0", "b2 10.0.0.15:6379@16379 slave c0")
    retiring = ["10.0.0.16", "10.0.0.17", "10.0.0.18"]
    staying = [f"10.0.0.{10 + i}" for i in range(6)]
    assert rc.retire_plan(view(moved), retiring, staying) == {
        "failover": ["10.0.0.12"],
        "empty": [],
        "delete": ["c1", "c2", "c0"],
    }


def test_a_scale_in_empties_the_shard_that_leaves():
    members = [*MEMBERS, {"name": "r-6", "address": "10.0.0.16"}, {"name": "r-7", "address": "10.0.0.17"}]
    text = converged().replace("10923-16383", "10923-15000") + (
        "d0 10.0.0.16:6379@16379 master - 0 1 4 connected 15001-16383\n"
        "d1 10.0.0.17:6379@16379 slave d0 0 1 4 connected\n"
    )
    ids = {**IDS, "r-6": "d0", "r-7": "d1"}
    assert rc.join_plan(members, 1, view(text), ids, shards=3, retiring=["r-6", "r-7"]) == rc.empty_join_plan()
    plan = rc.retire_plan(view(text), ["10.0.0.16", "10.0.0.17"], [m["address"] for m in MEMBERS])
    assert plan == {"failover": [], "empty": ["d0"], "delete": ["d1", "d0"]}


def test_the_filters_pass_the_shards_and_the_retiring_members_on():
    filters = FilterModule().filters()
    members = [*MEMBERS, {"name": "r-6", "address": "10.0.0.16"}]
    plan = filters["redis_join_plan"](members, 1, view(converged()), {**IDS, "r-6": "f0"}, shards=3, retiring=["r-5"])
    assert plan["add_replicas"] == [{"name": "r-6", "master": "r-4"}]
    retire = filters["redis_retire_plan"](view(converged()), ["10.0.0.14"], ["10.0.0.15"])
    assert (retire["failover"], retire["delete"]) == (["10.0.0.15"], ["c0"])
