"""security.validate: every limit at and over its boundary, control characters, hostile keys."""

from __future__ import annotations

import orjson
import pytest

from roundhouse.errors import InvalidInput
from roundhouse.security.validate import (
    DANGEROUS_KEYS,
    MAX_ARRAY_ITEMS,
    MAX_DEPTH,
    MAX_JSON_STRING_CHARS,
    MAX_OBJECT_KEYS,
    check_structure,
    parse_object,
    sanitize_string,
    strip_control,
)


def nested(depth: int) -> dict[str, object]:
    """An object ``depth`` containers deep: nested(1) == {}."""
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- strings --------------------------------------------------------------------------------------


def test_a_string_at_its_maximum_length_passes():
    assert sanitize_string("x" * 500, field="title", max_length=500) == "x" * 500


def test_a_string_one_over_its_maximum_length_is_refused_naming_the_field():
    with pytest.raises(
        InvalidInput, match="title is too long: 501 characters, at most 500"
    ) as info:
        sanitize_string("x" * 501, field="title", max_length=500)
    assert info.value.field == "title"


def test_a_huge_string_is_refused_without_echoing_it():
    with pytest.raises(InvalidInput) as info:
        sanitize_string("y" * 10_000_000, field="title", max_length=500)
    assert "yyy" not in str(info.value)
    assert "10,000,000" in str(info.value)


def test_the_length_is_counted_after_cleaning():
    # 500 visible characters and 300 null bytes: within the limit once cleaned.
    raw = "ab\x00" * 250 + "\x00" * 50
    assert sanitize_string(raw, field="title", max_length=500) == "ab" * 250


def test_null_bytes_and_control_characters_are_stripped():
    raw = "a\x00b\x01c\x07d\x1be\x7ff\x85g\x9fh"
    assert sanitize_string(raw, field="title", max_length=50) == "abcdefgh"


def test_one_line_fields_turn_tabs_and_line_breaks_into_spaces_and_are_trimmed():
    raw = "  first\tsecond\r\nthird\u2028fourth  "
    assert sanitize_string(raw, field="title", max_length=50) == "first second  third fourth"


def test_multiline_fields_keep_tabs_and_line_breaks_but_lose_other_controls():
    raw = "line one\n\tline two\r\n\x00\x0bend "
    assert (
        sanitize_string(raw, field="description", max_length=50, multiline=True)
        == "line one\n\tline two\r\nend "
    )


def test_a_string_of_only_controls_and_blanks_is_empty_and_refused_when_required():
    with pytest.raises(InvalidInput, match="title must not be empty"):
        sanitize_string(" \x00\x01\t ", field="title", max_length=50, min_length=1)


def test_a_minimum_above_one_is_named():
    with pytest.raises(InvalidInput, match="at least 3 characters"):
        sanitize_string("ab", field="q", max_length=50, min_length=3)


@pytest.mark.parametrize("value", [None, 1, 1.5, True, ["a"], {"a": 1}, b"bytes"])
def test_a_string_field_of_another_type_is_refused(value):
    with pytest.raises(InvalidInput, match="title must be a string"):
        sanitize_string(value, field="title", max_length=50)


def test_strip_control_keeps_ordinary_unicode():
    text = "Grüße — 日本語 🚂"
    assert strip_control(text) == text
    assert strip_control(text, multiline=False) == text


# --- structure ------------------------------------------------------------------------------------


def test_nesting_at_the_maximum_depth_passes():
    check_structure(nested(MAX_DEPTH))


def test_nesting_one_deeper_than_the_maximum_is_refused():
    with pytest.raises(InvalidInput, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_structure(nested(MAX_DEPTH + 1))


def test_arrays_count_toward_depth_like_objects():
    value: object = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    check_structure(value)
    with pytest.raises(InvalidInput, match="nested deeper"):
        check_structure([value])


def test_nesting_fifty_deep_is_refused():
    with pytest.raises(InvalidInput, match="nested deeper"):
        check_structure(nested(50))


def test_a_very_deep_nesting_costs_no_recursion():
    with pytest.raises(InvalidInput, match="nested deeper"):
        check_structure(nested(100_000))


def test_an_object_with_the_maximum_number_of_keys_passes():
    check_structure({f"k{i}": i for i in range(MAX_OBJECT_KEYS)})


def test_an_object_with_one_key_too_many_is_refused():
    with pytest.raises(InvalidInput, match=f"101 keys, at most {MAX_OBJECT_KEYS}"):
        check_structure({f"k{i}": i for i in range(MAX_OBJECT_KEYS + 1)})


def test_an_inner_object_with_too_many_keys_is_refused_and_located():
    with pytest.raises(InvalidInput, match=r"arguments\.inner has 101 keys"):
        check_structure({"inner": {f"k{i}": i for i in range(MAX_OBJECT_KEYS + 1)}})


def test_an_array_with_the_maximum_number_of_items_passes():
    check_structure({"items": list(range(MAX_ARRAY_ITEMS))})


def test_an_array_with_one_item_too_many_is_refused():
    with pytest.raises(InvalidInput, match="1,001 items, at most 1,000"):
        check_structure({"items": list(range(MAX_ARRAY_ITEMS + 1))})


@pytest.mark.parametrize("key", sorted(DANGEROUS_KEYS))
def test_a_dangerous_key_at_the_top_is_refused(key):
    with pytest.raises(InvalidInput, match="forbidden key"):
        check_structure({key: {"polluted": True}})


@pytest.mark.parametrize("key", ["__proto__", "constructor", "prototype"])
def test_a_dangerous_key_deep_inside_objects_and_arrays_is_refused(key):
    value = {"a": [{"b": {"c": [1, 2, {key: 1}]}}]}
    with pytest.raises(InvalidInput, match=f"forbidden key '{key}'"):
        check_structure(value)


def test_keys_that_merely_contain_a_dangerous_word_pass():
    check_structure({"constructor_name": 1, "my_prototype": 2, "proto": 3})


def test_scalars_and_empty_containers_pass():
    for value in (None, 1, "x", True, [], {}):
        check_structure(value)


# --- object parameters ----------------------------------------------------------------------------


def test_an_object_parameter_may_be_an_object():
    assert parse_object({"status": "done"}, field="filters") == {"status": "done"}


def test_an_object_parameter_may_be_a_json_string_of_one():
    assert parse_object('{"status": "done"}', field="filters") == {"status": "done"}


@pytest.mark.parametrize("text", ["not json", "{'single': 'quotes'}", '{"a": 1', "", "{} {}"])
def test_a_json_string_that_is_not_json_is_refused(text):
    with pytest.raises(InvalidInput, match="filters must be an object or a JSON string of one"):
        parse_object(text, field="filters")


@pytest.mark.parametrize(
    ("text", "held"),
    [("[1, 2]", "an array"), ('"x"', "a string"), ("3", "a number"), ("null", "null")],
)
def test_a_json_string_that_is_not_an_object_is_refused_saying_what_it_holds(text, held):
    with pytest.raises(InvalidInput, match=f"the string holds {held}"):
        parse_object(text, field="updates")


@pytest.mark.parametrize("value", [None, 3, ["a"], True])
def test_an_object_parameter_of_another_type_is_refused(value):
    with pytest.raises(InvalidInput, match="updates must be an object"):
        parse_object(value, field="updates")


def test_a_json_string_is_checked_like_an_object():
    with pytest.raises(InvalidInput, match="forbidden key '__proto__'"):
        parse_object('{"__proto__": {"admin": true}}', field="updates")
    with pytest.raises(InvalidInput, match="nested deeper"):
        parse_object(orjson.dumps(nested(50)).decode(), field="updates")


def test_a_json_string_over_the_length_cap_is_refused_unparsed():
    text = '{"a": "' + "x" * MAX_JSON_STRING_CHARS + '"}'
    with pytest.raises(InvalidInput, match="characters of JSON"):
        parse_object(text, field="updates")


def test_a_json_string_nested_beyond_the_parsers_own_limit_is_refused_as_not_json():
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_object("[" * 5000 + "]" * 5000, field="filters")
