from __future__ import annotations

import re
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.trove.dbaas.plugins.filter.extra_vars import FilterModule, extra_var_errors
from hypothesis import given, settings
from hypothesis import strategies as st

KINDS = {"confirm": "name", "force": "bool", "target_time": "text", "type": ["diff", "full", "incr"], "users": "names"}


@pytest.mark.parametrize(
    "given_vars",
    [
        {},
        {"confirm": None, "force": None},
        {"confirm": "", "target_time": " ", "users": ""},  # blank: not given (AWX optional answers)
        {"confirm": "pg-demo", "force": True, "target_time": "2025-01-31 12:00:00+00", "type": "incr"},
        {"force": "yes", "users": "app, reporting"},
        {"force": "False", "users": ["app"]},
    ],
)
def test_good_values_pass(given_vars: dict[str, Any]) -> None:
    assert extra_var_errors(given_vars, KINDS) == []


@pytest.mark.parametrize(
    ("given_vars", "expected"),
    [
        ({"confirm": ["pg-demo"]}, "confirm: expected a name (letters, digits, _ . -), got a list ['pg-demo']"),
        ({"confirm": 5}, "confirm: expected a name (letters, digits, _ . -), got an integer 5"),
        ({"confirm": "$(rm -rf /)"}, "confirm: expected a name (letters, digits, _ . -), got a string '$(rm -rf /)'"),
        ({"force": "maybe"}, "force: expected true or false, got a string 'maybe'"),
        ({"force": {"a": 1}}, "force: expected true or false, got a mapping {'a': 1}"),
        ({"target_time": ["x"]}, "target_time: expected one line of text, got a list ['x']"),
        ({"type": "weekly"}, "type: 'weekly' is not allowed; allowed: diff, full, incr"),
        ({"users": "app,,x y"}, "users: '', 'x y' is not a name"),
        ({"users": [1]}, "users: 1 is not a name"),
        ({"users": []}, "users: expected names separated by commas (letters, digits, _ . -), got a list []"),
        (
            {"confirm": "x" * 500},
            "confirm: expected a name (letters, digits, _ . -), got a string '" + "x" * 36 + "...",
        ),
    ],
)
def test_each_bad_value_gets_one_message_naming_the_variable(given_vars: dict[str, Any], expected: str) -> None:
    assert extra_var_errors(given_vars, KINDS) == [expected]


def test_messages_are_sorted_and_one_per_variable() -> None:
    errors = extra_var_errors({"users": 5, "confirm": 5, "force": 5}, KINDS)
    assert [error.split(":")[0] for error in errors] == ["confirm", "force", "users"]


def test_a_wrong_table_is_a_programming_error() -> None:
    with pytest.raises(AnsibleFilterError):
        extra_var_errors({}, {"x": "integer"})
    with pytest.raises(AnsibleFilterError):
        extra_var_errors([], KINDS)  # type: ignore[arg-type]


def test_registered() -> None:
    assert FilterModule().filters()["extra_var_errors"] is extra_var_errors


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, database=None)
@given(given_vars=st.dictionaries(st.sampled_from(sorted(KINDS)), values))
def test_any_value_gives_short_messages_naming_the_variable(given_vars: dict[str, Any]) -> None:
    errors = extra_var_errors(given_vars, KINDS)
    assert len(errors) <= len(given_vars)
    for error in errors:
        assert re.match(r"(confirm|force|target_time|type|users): \S", error)
        assert "\n" not in error and len(error) < 300


def test_tagged_values_read_like_plain_ones() -> None:
    class TaggedStr(str):
        pass

    class TaggedInt(int):
        pass

    assert extra_var_errors({"confirm": TaggedInt(5)}, KINDS) == [
        "confirm: expected a name (letters, digits, _ . -), got an integer 5"
    ]
    assert extra_var_errors({"force": TaggedStr("maybe")}, KINDS) == [
        "force: expected true or false, got a string 'maybe'"
    ]
    assert extra_var_errors({"confirm": TaggedStr("pg")}, KINDS) == []
