"""The Galera bootstrap decision: never two bootstraps, never from a member that lacks commits."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.trove.dbaas.plugins.module_utils._galera import (
    NO_UUID,
    bootstrap_plan,
    parse_grastate,
    parse_recovered,
)

MEMBERS = ["db-0", "db-1", "db-2"]
UUID = "5ee99582-bb8d-11ee-9e09-a6e8ea3b2d1a"
OTHER = "11111111-2222-3333-4444-555555555555"


def stopped(seqno: int, uuid: str = UUID, safe: bool = False) -> dict[str, Any]:
    return {"running": False, "has_data": True, "uuid": uuid, "seqno": seqno, "safe_to_bootstrap": safe}


def running(status: str = "Primary", seqno: int = 10, uuid: str = UUID) -> dict[str, Any]:
    return {"running": True, "cluster_status": status, "has_data": True, "uuid": uuid, "seqno": seqno}


NEW = {"running": False, "has_data": False, "uuid": NO_UUID, "seqno": -1}


def test_new_cluster_bootstraps_from_member_0():
    plan = bootstrap_plan(MEMBERS, dict.fromkeys(MEMBERS, NEW))
    assert (plan["action"], plan["member"], plan["running"]) == ("bootstrap", "db-0", False)


def test_installed_but_never_joined_members_count_as_new():
    fresh = {"running": False, "has_data": True, "uuid": NO_UUID, "seqno": -1}
    assert bootstrap_plan(MEMBERS, dict.fromkeys(MEMBERS, fresh))["member"] == "db-0"


def test_no_bootstrap_while_a_primary_component_runs():
    states = {"db-0": stopped(50), "db-1": running(seqno=40), "db-2": NEW}
    assert bootstrap_plan(MEMBERS, states)["action"] == "none"


def test_no_bootstrap_while_a_primary_component_runs_even_with_members_missing():
    assert bootstrap_plan(MEMBERS, {"db-2": running()})["action"] == "none"


def test_two_primary_components_are_refused():
    states = {"db-0": running(uuid=UUID), "db-1": running(uuid=OTHER), "db-2": NEW}
    plan = bootstrap_plan(MEMBERS, states, force=True)
    assert plan["action"] == "refuse"
    assert "bootstrapped twice" in plan["reason"]


def test_full_stop_bootstraps_from_the_highest_seqno():
    states = {"db-0": stopped(100), "db-1": stopped(120), "db-2": stopped(110, safe=True)}
    plan = bootstrap_plan(MEMBERS, states)
    assert (plan["action"], plan["member"]) == ("bootstrap", "db-1")
    assert "db-0=100, db-1=120, db-2=110" in plan["reason"]


def test_ties_prefer_safe_to_bootstrap_then_member_order():
    states = {"db-0": stopped(7), "db-1": stopped(7, safe=True), "db-2": stopped(7)}
    assert bootstrap_plan(MEMBERS, states)["member"] == "db-1"
    states["db-1"] = stopped(7)
    assert bootstrap_plan(MEMBERS, states)["member"] == "db-0"


def test_a_new_member_never_wins_over_members_with_data():
    states = {"db-0": NEW, "db-1": stopped(3), "db-2": stopped(2)}
    assert bootstrap_plan(MEMBERS, states)["member"] == "db-1"


def test_a_member_that_did_not_answer_is_refused_unless_forced():
    states = {"db-0": stopped(100), "db-1": stopped(120)}
    plan = bootstrap_plan(MEMBERS, states)
    assert plan["action"] == "refuse"
    assert plan["reason"].startswith("no member runs a primary component and db-2 did not answer")
    forced = bootstrap_plan(MEMBERS, states, force=True)
    assert (forced["action"], forced["member"]) == ("bootstrap", "db-1")


def test_a_new_cluster_with_a_member_missing_is_refused():
    plan = bootstrap_plan(MEMBERS, {"db-0": NEW, "db-1": NEW})
    assert plan["action"] == "refuse"


def test_an_unknown_position_is_refused_unless_forced():
    states = {"db-0": stopped(100), "db-1": stopped(-1), "db-2": stopped(90)}
    plan = bootstrap_plan(MEMBERS, states)
    assert plan["action"] == "refuse"
    assert "db-1 is unknown" in plan["reason"]
    assert bootstrap_plan(MEMBERS, states, force=True)["member"] == "db-0"


def test_data_of_different_clusters_is_refused_unless_forced_with_a_member():
    states = {"db-0": stopped(100), "db-1": stopped(5, uuid=OTHER), "db-2": stopped(90)}
    plan = bootstrap_plan(MEMBERS, states)
    assert plan["action"] == "refuse"
    assert f"{OTHER}: db-1" in plan["reason"]
    forced = bootstrap_plan(MEMBERS, states, force=True, prefer="db-2")
    assert (forced["action"], forced["member"]) == ("bootstrap", "db-2")


def test_a_running_non_primary_member_is_bootstrapped_in_place():
    states = {"db-0": running("non-Primary", seqno=30), "db-1": stopped(20), "db-2": stopped(25)}
    plan = bootstrap_plan(MEMBERS, states)
    assert (plan["action"], plan["member"], plan["running"]) == ("bootstrap", "db-0", True)


def test_prefer_must_name_a_member():
    plan = bootstrap_plan(MEMBERS, dict.fromkeys(MEMBERS, NEW), force=True, prefer="nobody")
    assert plan == {
        "action": "refuse",
        "member": "",
        "running": False,
        "reason": "bootstrap member nobody is not a member; members: db-0, db-1, db-2",
    }


@pytest.mark.parametrize("order", [MEMBERS, list(reversed(MEMBERS))])
def test_the_choice_does_not_depend_on_the_order_states_arrive(order):
    states = {m: stopped(s) for m, s in zip(order, (5, 9, 7), strict=True)}
    expected = max(states, key=lambda m: states[m]["seqno"])
    assert bootstrap_plan(MEMBERS, states)["member"] == expected


def test_parse_grastate():
    text = f"# GALERA saved state\nversion: 2.1\nuuid:    {UUID}\nseqno:   42\nsafe_to_bootstrap: 1\n"
    assert parse_grastate(text) == {"uuid": UUID, "seqno": 42, "safe_to_bootstrap": True}
    assert parse_grastate("") == {"uuid": NO_UUID, "seqno": -1, "safe_to_bootstrap": False}


@pytest.mark.parametrize(
    ("text", "seqno"),
    [
        (f"--wsrep_start_position={UUID}:17", 17),
        (f"--wsrep_start_position={UUID}:17,0-1-5", 17),
        (f"2026-01-01 [Note] WSREP: Recovered position: {UUID}:8", 8),
        ("nothing here", -1),
    ],
)
def test_parse_recovered(text, seqno):
    assert parse_recovered(text)["seqno"] == seqno
