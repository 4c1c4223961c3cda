"""Galera bootstrap decision for the mariadb role (topology galera).

A Galera cluster is bootstrapped (a new primary component created with --wsrep-new-cluster) only
when no member runs one. Bootstrapping twice makes two clusters that never merge again, and
bootstrapping from a member that lacks commits loses them; the rules here decide from what every
member reported, and refuse when that is not enough to decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_UUID = "00000000-0000-0000-0000-000000000000"


def _uuid(state: Mapping[str, Any]) -> str:
    return str(state.get("uuid") or NO_UUID)


def _seqno(state: Mapping[str, Any]) -> int:
    try:
        return int(state.get("seqno", -1))
    except (TypeError, ValueError):
        return -1


def _has_data(state: Mapping[str, Any]) -> bool:
    return bool(state.get("has_data")) and _uuid(state) != NO_UUID


def _plan(action: str, member: str = "", reason: str = "", running: bool = False) -> dict[str, Any]:
    return {"action": action, "member": member, "running": running, "reason": reason}


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def bootstrap_plan(
    members: Sequence[str], states: Mapping[str, Mapping[str, Any]], force: bool = False, prefer: str = ""
) -> dict[str, Any]:
    """Decide whether and where to bootstrap.

    `members`: member names in spec order (member 0 first). `states`: what each member that answered
    reported, by name: `running` (the server answers), `cluster_status` (wsrep_cluster_status of a
    running server: Primary, non-Primary, Disconnected), `has_data`, `uuid` (cluster state UUID),
    `seqno` (last committed: grastate.dat, mariadbd --wsrep-recover, or wsrep_last_committed;
    -1 when unknown), `safe_to_bootstrap`. A member missing from `states` did not answer.
    `force` bootstraps although members did not answer or the state is ambiguous; `prefer` names
    the member to bootstrap from when forced.

    Returns {action, member, running, reason}: action `none` (a primary component runs: members
    join it), `bootstrap` (from `member`; `running` when it already runs in a non-Primary component
    and is made primary in place), or `refuse` (`reason` says why and what to do).
    """
    return (
        _primary_plan(members, states)
        or _answer_plan(members, states, force, prefer)
        or _data_plan(members, states, force)
        or _best(members, states)
    )


def _primary_plan(members: Sequence[str], states: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Never bootstrap while a primary component runs: the others join it."""
    running = [m for m in members if m in states and states[m].get("running")]
    primary = [m for m in running if states[m].get("cluster_status") == "Primary"]
    if not primary:
        return None
    uuids = sorted({_uuid(states[m]) for m in primary})
    if len(uuids) > 1:
        return _plan(
            "refuse",
            reason=f"members {_names(primary)} run in different primary components (cluster UUIDs "
            f"{_names(uuids)}): the cluster was bootstrapped twice. Stop the members of all but one "
            "component; they rejoin the remaining one by state transfer on the next apply.",
        )
    return _plan("none", reason=f"a primary component runs on {_names(primary)}")


def _answer_plan(
    members: Sequence[str], states: Mapping[str, Mapping[str, Any]], force: bool, prefer: str
) -> dict[str, Any] | None:
    """Refused while members did not answer (unless forced); the forced choice of a member."""
    missing = [m for m in members if m not in states]
    if prefer and (prefer not in members or (force and prefer not in states)):
        what = "is not a member; members: " + _names(members) if prefer not in members else "did not answer"
        return _plan("refuse", reason=f"bootstrap member {prefer} {what}")
    if missing and not force:
        return _plan(
            "refuse",
            reason=f"no member runs a primary component and {_names(missing)} did not answer: it may run the "
            "cluster or hold its latest commits, and bootstrapping now could make a second cluster or lose "
            "commits. Bring it back and apply again, or pass mariadb_galera_bootstrap_force=true to bootstrap "
            "from the most advanced member that answers.",
        )
    if prefer and force:
        running = bool(states[prefer].get("running"))
        return _plan("bootstrap", prefer, f"forced bootstrap from {prefer}", running=running)
    return None


def _data_plan(members: Sequence[str], states: Mapping[str, Mapping[str, Any]], force: bool) -> dict[str, Any] | None:
    """Refused when the members' positions cannot be compared (unless forced)."""
    with_data = [m for m in members if m in states and _has_data(states[m])]
    unknown = [m for m in with_data if _seqno(states[m]) < 0]
    if unknown and not force:
        return _plan(
            "refuse",
            reason=f"the last committed position of {_names(unknown)} is unknown (grastate.dat seqno -1 and "
            "mariadbd --wsrep-recover found none), so the most advanced member cannot be told. Read it by hand "
            "(docs/mariadb.md, Galera) and pass mariadb_galera_bootstrap_force=true with "
            "mariadb_galera_bootstrap_member=<member>.",
        )
    known = [m for m in with_data if m not in unknown]
    uuids = sorted({_uuid(states[m]) for m in known})
    if len(uuids) > 1 and not force:
        by_uuid = "; ".join(f"{u}: {_names([m for m in known if _uuid(states[m]) == u])}" for u in uuids)
        return _plan(
            "refuse",
            reason=f"members hold data of different clusters ({by_uuid}), so there is no single history to "
            "continue. Choose the member to keep and pass mariadb_galera_bootstrap_force=true with "
            "mariadb_galera_bootstrap_member=<member>; the others then take a full state transfer from it.",
        )
    if with_data and not known:
        return _plan("refuse", reason=f"no committed position could be read on {_names(with_data)}")
    return None


def _best(members: Sequence[str], states: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A new cluster on the first member; else the highest committed seqno (ties: safe_to_bootstrap, spec order)."""
    answered = [m for m in members if m in states]
    known = [m for m in answered if _has_data(states[m]) and _seqno(states[m]) >= 0]
    if not known:
        if not answered:
            return _plan("refuse", reason="no member answered")
        return _plan("bootstrap", answered[0], f"no member has data: a new cluster starts on {answered[0]}")
    best = max(known, key=lambda m: (_seqno(states[m]), bool(states[m].get("safe_to_bootstrap")), -members.index(m)))
    seqnos = ", ".join(f"{m}={_seqno(states[m])}" for m in known)
    return _plan(
        "bootstrap",
        best,
        f"no member runs a primary component; {best} has the highest committed seqno ({seqnos})",
        running=bool(states[best].get("running")),
    )


def parse_grastate(text: str) -> dict[str, Any]:
    """Fields of a grastate.dat: uuid, seqno (int), safe_to_bootstrap (bool)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    try:
        seqno = int(fields.get("seqno", "-1"))
    except ValueError:
        seqno = -1
    return {
        "uuid": fields.get("uuid", NO_UUID) or NO_UUID,
        "seqno": seqno,
        "safe_to_bootstrap": fields.get("safe_to_bootstrap", "0") == "1",
    }


def parse_recovered(text: str) -> dict[str, Any]:
    """The position mariadbd --wsrep-recover (or galera_recovery) printed: {uuid, seqno}, seqno -1 if none."""
    for token in text.replace("=", " ").split():
        uuid, sep, seqno = token.rpartition(":")
        if sep and len(uuid) == len(NO_UUID) and uuid.count("-") == 4:
            try:
                return {"uuid": uuid, "seqno": int(seqno.split(",")[0])}
            except ValueError:
                continue
    return {"uuid": NO_UUID, "seqno": -1}
