"""The condition language and templates: every operator, groups, missing fields, and validation."""

from __future__ import annotations

import pytest

from automation.expressions import (
    CONTEXT_ROOTS,
    ENVELOPE_ROOTS,
    Invalid,
    check_condition,
    check_template,
    matches,
    render,
)

EVENT = {
    "name": "collection-create",
    "datatype": "lead",
    "data": {"email": "ada@acme.test", "age": 36, "tags": ["vip", "beta"], "plan": None, "meta": {"k": 1}},
    "record": {"label": "core.record", "pk": "42"},
}


@pytest.mark.parametrize(
    ("op", "path", "value", "expected"),
    [
        ("equals", "data.email", "ada@acme.test", True),
        ("equals", "data.age", 36.0, True),  # numbers compare as numbers
        ("equals", "data.age", "36", False),  # ... but not with strings
        ("equals", "data.missing", None, False),
        ("not-equals", "datatype", "deal", True),
        ("not-equals", "data.missing", "x", True),
        ("contains", "data.email", "@acme", True),
        ("contains", "data.tags", "vip", True),
        ("contains", "data.tags", "gold", False),
        ("contains", "data.meta", "k", True),
        ("in", "datatype", ["account", "lead"], True),
        ("in", "datatype", ["deal"], False),
        ("greater-than", "data.age", 30, True),
        ("greater-than", "data.age", 36, False),
        ("less-than", "data.age", 40, True),
        ("less-than", "data.email", "b", True),  # strings compare as strings
        ("greater-than", "data.email", 3, False),  # mismatched types never compare
        ("greater-than", "data.missing", 0, False),
        ("exists", "data.email", True, True),
        ("exists", "data.plan", True, False),  # null does not exist
        ("exists", "data.missing", False, True),
        ("equals", "data.tags.1", "beta", True),  # list index
        ("equals", "record.pk", "42", True),
    ],
)
def test_each_operator_reads_the_envelope(op, path, value, expected):
    condition = check_condition({"path": path, "op": op, "value": value}, ENVELOPE_ROOTS)
    assert matches(condition, EVENT) is expected


def test_groups_combine_with_all_and_any_and_a_bare_list_means_all():
    both = check_condition(
        [
            {"path": "datatype", "op": "equals", "value": "lead"},
            {"path": "data.age", "op": "less-than", "value": 30},
        ],
        ENVELOPE_ROOTS,
    )
    assert both == {"all": [{"path": "datatype", "op": "equals", "value": "lead"},
                            {"path": "data.age", "op": "less-than", "value": 30}]}  # fmt: skip
    assert matches(both, EVENT) is False
    either = check_condition(
        {"any": [{"path": "data.age", "op": "less-than", "value": 30}, {"path": "data.tags", "op": "contains",
                                                                          "value": "vip"}]},
        ENVELOPE_ROOTS,
    )  # fmt: skip
    assert matches(either, EVENT) is True
    assert matches(None, EVENT) is True


@pytest.mark.parametrize(
    ("condition", "detail"),
    [
        (
            {"path": "data.email", "op": "like", "value": "x"},
            {
                "op": [
                    "'like' is not an operator; use one of: "
                    "equals, not-equals, contains, in, "
                    "greater-than, less-than, exists."
                ]
            },
        ),
        ({"path": "data..email", "op": "equals", "value": "x"}, "path"),
        ({"path": "secrets.key", "op": "equals", "value": "x"}, "path"),
        ({"path": "data.email", "op": "in", "value": "x"}, "value"),
        ({"path": "data.email", "op": "equals"}, "value"),
        ({"path": "data.email", "op": "exists", "value": "yes"}, "value"),
        ({"path": "data.email", "op": "greater-than", "value": [1]}, "value"),
        ({"all": []}, "all"),
    ],
)
def test_bad_conditions_say_which_field_is_wrong(condition, detail):
    with pytest.raises(Invalid) as raised:
        check_condition(condition, ENVELOPE_ROOTS)
    if isinstance(detail, dict):
        assert raised.value.detail == detail
    else:
        assert detail in raised.value.detail


def test_a_nested_group_error_names_its_position():
    with pytest.raises(Invalid) as raised:
        check_condition(
            {
                "any": [
                    {"path": "name", "op": "equals", "value": "x"},
                    {"path": "", "op": "equals", "value": 1},
                ]
            },
            ENVELOPE_ROOTS,
        )
    assert list(raised.value.detail["any"]) == ["1"]
    assert "path" in raised.value.detail["any"]["1"]


def test_templates_keep_types_for_whole_placeholders_and_interpolate_inside_text():
    context = {"event": EVENT, "steps": {"step-1": {"record_id": "r1"}}}
    template = {
        "email": "{{ event.data.email }}",
        "age": "{{event.data.age}}",
        "tags": "{{ event.data.tags }}",
        "line": "Hello {{ event.data.email }}, you are {{ event.data.age }} ({{ event.data.tags }})",
        "made": "{{ steps.step-1.record_id }}",
        "absent": "{{ event.data.nothing }}",
        "absent_in_text": "[{{ event.data.nothing }}]",
        "nested": [{"k": "{{ event.datatype }}"}, 7],
    }
    check_template(template, CONTEXT_ROOTS)
    assert render(template, context) == {
        "email": "ada@acme.test",
        "age": 36,
        "tags": ["vip", "beta"],
        "line": 'Hello ada@acme.test, you are 36 (["vip","beta"])',
        "made": "r1",
        "absent": None,
        "absent_in_text": "[]",
        "nested": [{"k": "lead"}, 7],
    }


def test_a_template_path_outside_the_context_is_refused_where_it_is():
    with pytest.raises(Invalid) as raised:
        check_template({"a": {"b": "{{ settings.SECRET_KEY }}"}}, CONTEXT_ROOTS)
    assert "b" in raised.value.detail["a"]
