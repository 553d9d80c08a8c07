"""The catalog and its paging: pure code, no I/O."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roundhouse.errors import InvalidInput
from roundhouse.gateway.catalog import NAME_PATTERN, Catalog, compile_uri_template
from roundhouse.gateway.paging import encode_cursor, merge_cache_hints, page
from roundhouse.spec import ToolsSpec

ALL = ToolsSpec()


def tools(*names: str, slug: str = "") -> list[dict[str, Any]]:
    return [
        {"name": name, "description": f"{slug}:{name}", "inputSchema": {"type": "object"}}
        for name in names
    ]


def names(catalog: Catalog) -> list[str]:
    return [tool["name"] for tool in catalog.tools()]


def two_servers(collision: str, *, priority_a: int = 0, priority_b: int = 0) -> Catalog:
    catalog = Catalog(collision=collision)  # type: ignore[arg-type]
    catalog.set_server("alpha", priority=priority_a, tools_spec=ALL, tools=tools("search", "a1"))
    catalog.set_server("beta", priority=priority_b, tools_spec=ALL, tools=tools("search", "b1"))
    return catalog


# --- collision policies -------------------------------------------------------------------------


def test_the_prefix_policy_names_every_tool_by_its_server() -> None:
    catalog = two_servers("prefix")
    assert sorted(names(catalog)) == ["alpha__a1", "alpha__search", "beta__b1", "beta__search"]
    assert catalog.resolve_tool("beta__search") == ("beta", "search")
    assert catalog.resolve_tool("search") is None
    assert catalog.conflicts() == []


def test_the_prefix_policy_uses_the_configured_separator() -> None:
    catalog = Catalog(separator=".")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("search"))
    assert names(catalog) == ["alpha.search"]


def test_the_priority_policy_gives_the_plain_name_to_the_higher_priority() -> None:
    catalog = two_servers("priority", priority_a=1, priority_b=9)
    assert sorted(names(catalog)) == ["a1", "alpha__search", "b1", "search"]
    assert catalog.resolve_tool("search") == ("beta", "search")
    assert catalog.resolve_tool("alpha__search") == ("alpha", "search")
    assert catalog.resolve_tool("a1") == ("alpha", "a1")


def test_a_priority_tie_goes_to_the_first_slug_in_order() -> None:
    catalog = two_servers("priority", priority_a=5, priority_b=5)
    assert catalog.resolve_tool("search") == ("alpha", "search")
    assert catalog.resolve_tool("beta__search") == ("beta", "search")


def test_the_priority_policy_hides_nothing() -> None:
    catalog = two_servers("priority")
    assert len(catalog.tools()) == 4


def test_the_error_policy_leaves_a_clashing_name_out_for_every_server_and_reports_it() -> None:
    catalog = two_servers("error", priority_a=0, priority_b=200)
    assert sorted(names(catalog)) == ["a1", "b1"]
    assert catalog.resolve_tool("search") is None
    assert catalog.resolve_tool("alpha__search") is None
    [conflict] = catalog.conflicts()
    assert "'search'" in conflict and "alpha" in conflict and "beta" in conflict


def test_the_error_policy_brings_the_name_back_when_the_clash_is_gone() -> None:
    catalog = two_servers("error")
    catalog.remove_server("beta")
    assert catalog.resolve_tool("search") == ("alpha", "search")
    assert catalog.conflicts() == []


def test_raising_a_priority_moves_the_plain_name() -> None:
    catalog = two_servers("priority", priority_a=1, priority_b=0)
    assert catalog.resolve_tool("search") == ("alpha", "search")
    catalog.set_server("beta", priority=2, tools_spec=ALL)
    assert catalog.resolve_tool("search") == ("beta", "search")


def test_prompts_have_their_own_namespace() -> None:
    catalog = Catalog(collision="error")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("greet"))
    catalog.set_server("beta", priority=0, tools_spec=ALL, prompts=[{"name": "greet"}])
    assert catalog.resolve_tool("greet") == ("alpha", "greet")
    assert catalog.resolve_prompt("greet") == ("beta", "greet")
    assert catalog.prompts() == [{"name": "greet"}]


def test_prompts_are_namespaced_like_tools() -> None:
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, prompts=[{"name": "p", "title": "P"}])
    assert catalog.prompts() == [{"name": "alpha__p", "title": "P"}]
    assert catalog.resolve_prompt("alpha__p") == ("alpha", "p")


def test_names_that_meet_after_prefixing_are_still_told_apart() -> None:
    # slug "a-b" + "-" + "c" and slug "a" + "-" + "b-c" both spell "a-b-c".
    catalog = Catalog(separator="-")
    catalog.set_server("a-b", priority=0, tools_spec=ALL, tools=tools("c"))
    catalog.set_server("a", priority=0, tools_spec=ALL, tools=tools("b-c"))
    offered = names(catalog)
    assert len(set(offered)) == 2
    assert {catalog.resolve_tool(name) for name in offered} == {("a-b", "c"), ("a", "b-c")}
    assert catalog.resolve_tool("a-b-c") == ("a", "b-c")  # rank order: same priority, slug order


# --- long and odd names -------------------------------------------------------------------------


def test_a_name_over_the_limit_is_cut_and_ends_in_a_hash_of_the_full_name() -> None:
    long_name = "x" * 65
    catalog = Catalog(collision="priority")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools(long_name, "x" * 64))
    short = names(catalog)[0]
    assert len(short) == 64
    assert re.fullmatch(r"x{55}_[0-9a-f]{8}", short)
    assert names(catalog)[1] == "x" * 64  # exactly at the limit: unchanged
    assert catalog.resolve_tool(short) == ("alpha", long_name)


def test_a_200_character_name_is_cut_to_the_configured_limit() -> None:
    catalog = Catalog(max_name_length=32)
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("y" * 200))
    [short] = names(catalog)
    assert len(short) == 32
    assert catalog.resolve_tool(short) == ("alpha", "y" * 200)


def test_long_names_sharing_a_prefix_stay_distinct_and_stable_across_rebuilds() -> None:
    long_names = [f"{'shared_prefix_' * 10}{i}" for i in range(500)]
    first = Catalog()
    first.set_server("alpha", priority=0, tools_spec=ALL, tools=tools(*long_names))
    offered = names(first)
    assert len(set(offered)) == 500
    assert all(len(name) <= 64 for name in offered)
    second = Catalog()
    second.set_server("zeta", priority=0, tools_spec=ALL, tools=tools("other"))
    second.set_server("alpha", priority=0, tools_spec=ALL, tools=tools(*reversed(long_names)))
    assert sorted(n for n in names(second) if n.startswith("alpha")) == sorted(offered)
    for name, long_name in zip(offered, long_names, strict=True):
        assert second.resolve_tool(name) == ("alpha", long_name)


def test_two_different_long_names_never_collide() -> None:
    catalog = Catalog(collision="priority")
    a, b = "q" * 100 + "a", "q" * 100 + "b"
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools(a, b))
    first, second = names(catalog)
    assert first != second
    assert first[:55] == second[:55]
    assert catalog.resolve_tool(first) == ("alpha", a)
    assert catalog.resolve_tool(second) == ("alpha", b)


@pytest.mark.parametrize("odd", ["get weather", "files/read", "héllo", "emoji🙂", "tab\tname"])
def test_a_name_with_characters_clients_reject_is_sanitized_and_hashed(odd: str) -> None:
    catalog = Catalog(collision="priority")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools(odd))
    [offered] = names(catalog)
    assert NAME_PATTERN.fullmatch(offered)
    assert re.search(r"_[0-9a-f]{8}$", offered)
    assert catalog.resolve_tool(offered) == ("alpha", odd)


def test_names_that_sanitize_alike_stay_distinct() -> None:
    catalog = Catalog(collision="priority")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("a b", "a/b", "a_b"))
    offered = names(catalog)
    assert len(set(offered)) == 3
    assert "a_b" in offered
    assert {catalog.resolve_tool(name) for name in offered} == {
        ("alpha", "a b"),
        ("alpha", "a/b"),
        ("alpha", "a_b"),
    }


# --- allow, deny, rename ------------------------------------------------------------------------


def test_allow_and_deny_take_names_and_patterns() -> None:
    catalog = Catalog(collision="priority")
    spec = ToolsSpec(allow=["get_*", "search"], deny=["get_secret*"])
    offered = tools("get_a", "get_b", "get_secret_key", "search", "delete_all")
    catalog.set_server("alpha", priority=0, tools_spec=spec, tools=offered)
    assert names(catalog) == ["get_a", "get_b", "search"]


def test_patterns_are_case_sensitive() -> None:
    catalog = Catalog(collision="priority")
    catalog.set_server(
        "alpha", priority=0, tools_spec=ToolsSpec(deny=["Drop*"]), tools=tools("Drop", "drop")
    )
    assert names(catalog) == ["drop"]


def test_an_empty_allow_list_offers_nothing() -> None:
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ToolsSpec(allow=[]), tools=tools("a"))
    assert catalog.tools() == []


def test_rename_applies_before_namespacing_and_routes_to_the_servers_own_name() -> None:
    catalog = Catalog()
    spec = ToolsSpec(rename={"search_issues": "find"})
    catalog.set_server("gh", priority=0, tools_spec=spec, tools=tools("search_issues"))
    assert names(catalog) == ["gh__find"]
    assert catalog.resolve_tool("gh__find") == ("gh", "search_issues")


def test_allow_and_deny_see_the_servers_own_names_not_the_renamed_ones() -> None:
    catalog = Catalog(collision="priority")
    spec = ToolsSpec(allow=["old"], rename={"old": "new"})
    catalog.set_server("alpha", priority=0, tools_spec=spec, tools=tools("old", "new_thing"))
    assert names(catalog) == ["new"]


def test_a_rename_onto_another_tool_of_the_server_is_ignored_and_reported() -> None:
    catalog = Catalog(collision="priority")
    spec = ToolsSpec(rename={"a": "b"})
    catalog.set_server("alpha", priority=0, tools_spec=spec, tools=tools("a", "b"))
    assert sorted(names(catalog)) == ["a", "b"]
    assert catalog.resolve_tool("b") == ("alpha", "b")
    [conflict] = catalog.conflicts()
    assert "rename 'a' -> 'b' ignored" in conflict


def test_two_tools_may_swap_names_by_rename() -> None:
    catalog = Catalog(collision="priority")
    spec = ToolsSpec(rename={"a": "b", "b": "a"})
    catalog.set_server("alpha", priority=0, tools_spec=spec, tools=tools("a", "b"))
    assert catalog.resolve_tool("a") == ("alpha", "b")
    assert catalog.resolve_tool("b") == ("alpha", "a")
    assert catalog.conflicts() == []


def test_a_new_tools_spec_alone_rebuilds_the_tools() -> None:
    catalog = Catalog(collision="priority")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("a", "b"))
    changed = catalog.set_server("alpha", priority=0, tools_spec=ToolsSpec(deny=["a"]))
    assert changed == {"tools"}
    assert names(catalog) == ["b"]


# --- resources and templates --------------------------------------------------------------------


def test_resources_keep_their_uris_and_route_by_them() -> None:
    catalog = Catalog()
    listed = [{"uri": "file:///a.txt", "name": "a"}]
    catalog.set_server("files", priority=0, tools_spec=ALL, resources=listed)
    assert catalog.resources() == listed
    assert catalog.resolve_resource("file:///a.txt") == "files"
    assert catalog.resolve_resource("file:///b.txt") is None


def test_a_uri_offered_twice_is_served_by_the_higher_priority_and_reported() -> None:
    catalog = Catalog()
    catalog.set_server("low", priority=1, tools_spec=ALL, resources=[{"uri": "x://1", "name": "l"}])
    catalog.set_server(
        "high", priority=9, tools_spec=ALL, resources=[{"uri": "x://1", "name": "h"}]
    )
    assert catalog.resources() == [{"uri": "x://1", "name": "h"}]
    assert catalog.resolve_resource("x://1") == "high"
    [conflict] = catalog.conflicts()
    assert "'x://1'" in conflict and "high serves it" in conflict


def test_templates_route_the_uris_they_expand_to() -> None:
    catalog = Catalog()
    catalog.set_server(
        "users",
        priority=0,
        tools_spec=ALL,
        templates=[{"uriTemplate": "users://{id}/profile", "name": "profile"}],
    )
    catalog.set_server(
        "files",
        priority=0,
        tools_spec=ALL,
        templates=[{"uriTemplate": "file:///{+path}", "name": "file"}],
        resources=[{"uri": "users://7/profile", "name": "seven"}],
    )
    assert catalog.resolve_resource("users://42/profile") == "users"
    assert catalog.resolve_resource("users://4/2/profile") is None
    assert catalog.resolve_resource("file:///etc/hosts") == "files"
    assert catalog.resolve_resource("users://7/profile") == "files"  # an exact uri comes first
    assert catalog.resolve_resource("users://{id}/profile") == "users"  # completion refs
    assert catalog.resolve_resource("ftp://x") is None


def test_when_templates_overlap_the_higher_priority_wins() -> None:
    catalog = Catalog()
    catalog.set_server(
        "low", priority=1, tools_spec=ALL, templates=[{"uriTemplate": "x://{+rest}", "name": "l"}]
    )
    catalog.set_server(
        "high", priority=5, tools_spec=ALL, templates=[{"uriTemplate": "x://{a}", "name": "h"}]
    )
    assert catalog.resolve_resource("x://one") == "high"
    assert catalog.resolve_resource("x://one/two") == "low"
    catalog.set_server("low", priority=9, tools_spec=ALL)
    assert catalog.resolve_resource("x://one") == "low"


@pytest.mark.parametrize(
    ("template", "matching", "other"),
    [
        ("repo://{owner}/{repo}", "repo://a/b", "repo://a/b/c"),
        ("repo://{owner}/tree{/path*}", "repo://a/tree/x/y", "repo://a/treex"),
        ("search://q{?query,limit}", "search://q?query=a&limit=3", "search://qq"),
        ("doc://{name}{#section}", "doc://a#b", "doc://a/b"),
        ("host://{sub}{.domain*}", "host://www.example.com", "host://a/b"),
        ("m://{x}{;p}", "m://a;p=1", "m://a/b"),
        ("file:///{+dir}/{name}.txt", "file:///a/b/c.txt", "file:///a/b/c.md"),
        ("plain://fixed", "plain://fixed", "plain://fixed2"),
    ],
)
def test_uri_templates_of_levels_one_to_three_match(
    template: str, matching: str, other: str
) -> None:
    pattern = compile_uri_template(template)
    assert pattern is not None
    assert re.fullmatch(pattern, matching, re.DOTALL)
    assert not re.fullmatch(pattern, other, re.DOTALL)


@pytest.mark.parametrize("template", ["x://{", "x://{a}}", "x://{}", "x://{a b}", "x://{=a}"])
def test_a_malformed_template_routes_only_its_own_text(template: str) -> None:
    assert compile_uri_template(template) is None
    catalog = Catalog()
    catalog.set_server(
        "a", priority=0, tools_spec=ALL, templates=[{"uriTemplate": template, "name": "t"}]
    )
    assert catalog.resolve_resource(template) == "a"
    assert catalog.resolve_resource("x://a") is None
    assert catalog.conflicts()


def test_a_crafted_template_and_uri_cannot_stall_routing() -> None:
    catalog = Catalog()
    crafted = ["x://{a}x{b}x{c}y", "{+a}/{/b}xy{?c}/", "{.a}.{b}=", "{/a}/"]
    catalog.set_server(
        "a",
        priority=0,
        tools_spec=ALL,
        templates=[{"uriTemplate": t, "name": str(i)} for i, t in enumerate(crafted)],
    )
    started = time.perf_counter()
    for unit in ("x", "/", ".x", "x/"):
        catalog.resolve_resource((unit * 4096)[:4095] + "!")
    # Generous: linear matching takes well under a millisecond; backtracking would take minutes.
    assert time.perf_counter() - started < 1.0


# --- lifecycle ----------------------------------------------------------------------------------


def full_server(catalog: Catalog, slug: str) -> None:
    catalog.set_server(
        slug,
        priority=0,
        tools_spec=ALL,
        tools=tools("t"),
        prompts=[{"name": "p"}],
        resources=[{"uri": f"{slug}://r", "name": "r"}],
        templates=[{"uriTemplate": f"{slug}://t/{{x}}", "name": "t"}],
    )


def test_removing_a_server_withdraws_everything_it_offered() -> None:
    catalog = Catalog()
    full_server(catalog, "alpha")
    full_server(catalog, "beta")
    changed = catalog.remove_server("alpha")
    assert changed == {"tools", "prompts", "resources", "templates"}
    assert names(catalog) == ["beta__t"]
    assert catalog.resolve_tool("alpha__t") is None
    assert catalog.resolve_prompt("alpha__p") is None
    assert catalog.resolve_resource("alpha://r") is None
    assert catalog.resolve_resource("alpha://t/1") is None
    assert catalog.resolve_resource("beta://t/1") == "beta"
    assert [r["uri"] for r in catalog.resources()] == ["beta://r"]
    assert len(catalog.templates()) == 1


def test_a_server_is_known_from_its_first_lists_until_it_is_removed() -> None:
    catalog = Catalog()
    assert not catalog.has_server("alpha")
    catalog.set_server("alpha", priority=0, tools_spec=ALL)
    assert catalog.has_server("alpha")
    catalog.remove_server("alpha")
    assert not catalog.has_server("alpha")


def test_removing_an_unknown_server_changes_nothing() -> None:
    catalog = Catalog()
    assert catalog.remove_server("ghost") == frozenset()
    assert catalog.version == 0


def test_the_version_bumps_on_every_change_and_only_then() -> None:
    catalog = Catalog()
    full_server(catalog, "alpha")
    assert catalog.version == 1
    full_server(catalog, "alpha")  # the same lists again: nothing to announce
    assert catalog.version == 1
    assert catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("t", "u")) == {
        "tools"
    }
    assert catalog.version == 2
    catalog.set_server("alpha", priority=0, tools_spec=ALL, prompts=[])
    assert catalog.version == 3
    catalog.remove_server("alpha")
    assert catalog.version == 4


def test_a_list_left_as_none_keeps_what_the_server_had() -> None:
    catalog = Catalog()
    full_server(catalog, "alpha")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("t2"))
    assert catalog.resolve_prompt("alpha__p") == ("alpha", "p")
    assert catalog.resolve_tool("alpha__t2") == ("alpha", "t2")


def test_a_server_whose_tools_are_all_denied_changes_nothing() -> None:
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ToolsSpec(allow=[]), tools=tools("a"))
    assert catalog.version == 0


def test_every_resolver_answers_for_every_kind() -> None:
    catalog = Catalog(collision="priority")
    full_server(catalog, "alpha")
    assert catalog.resolve_tool("t") == ("alpha", "t")
    assert catalog.resolve_prompt("p") == ("alpha", "p")
    assert catalog.resolve_resource("alpha://r") == "alpha"
    assert catalog.resolve_resource("alpha://t/9") == "alpha"
    assert catalog.resolve_tool("p") is None
    assert catalog.resolve_prompt("t") is None


# --- copies -------------------------------------------------------------------------------------


def test_the_upstreams_dicts_are_never_changed() -> None:
    listed = tools("search")
    before = orjson.dumps(listed)
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=listed)
    assert orjson.dumps(listed) == before
    assert catalog.tools()[0]["name"] == "alpha__search"


def test_changing_what_the_catalog_returned_does_not_change_the_catalog() -> None:
    catalog = Catalog()
    catalog.set_server(
        "alpha", priority=0, tools_spec=ALL, tools=tools("a"), resources=[{"uri": "x://", "n": 1}]
    )
    given_out = catalog.tools()
    given_out[0]["name"] = "hijacked"
    del given_out[0]["description"]
    given_out.append({"name": "extra"})
    catalog.resources()[0]["uri"] = "y://"
    assert catalog.tools() == [
        {"name": "alpha__a", "description": ":a", "inputSchema": {"type": "object"}}
    ]
    assert catalog.resources() == [{"uri": "x://", "n": 1}]


def test_changing_the_list_given_in_does_not_change_the_catalog() -> None:
    listed = tools("a")
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=listed)
    listed.append(tools("b")[0])
    listed[0]["name"] = "renamed behind our back"
    assert names(catalog) == ["alpha__a"]
    assert catalog.resolve_tool("alpha__a") == ("alpha", "a")


# --- hostile input ------------------------------------------------------------------------------


def test_entries_without_a_usable_name_are_left_out_and_counted() -> None:
    listed: list[Any] = [
        {"description": "no name"},
        {"name": 42},
        {"name": ""},
        {"name": None},
        "not a dict",
        None,
        {"name": "good"},
        {"name": "good", "description": "again"},
    ]
    catalog = Catalog(collision="priority")
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=listed)
    assert catalog.tools() == [{"name": "good"}]
    problems = catalog.conflicts()
    assert any("6 tools without a usable name" in problem for problem in problems)
    assert any("listed twice" in problem for problem in problems)


def test_a_list_that_is_not_a_list_offers_nothing() -> None:
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools={"name": "x"})  # type: ignore[arg-type]
    assert catalog.tools() == []
    assert catalog.conflicts()


def test_resources_and_templates_without_their_key_are_left_out() -> None:
    catalog = Catalog()
    catalog.set_server(
        "alpha",
        priority=0,
        tools_spec=ALL,
        resources=[{"name": "no uri"}, {"uri": 5}],
        templates=[{"name": "no template"}],
    )
    assert catalog.resources() == []
    assert catalog.templates() == []


def test_ten_thousand_problems_are_reported_in_a_few_lines() -> None:
    catalog = Catalog()
    listed = [{"name": "same"} for _ in range(10_000)]
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=listed)
    assert len(catalog.conflicts()) <= 21


def test_resolvers_do_not_trip_over_names_that_are_not_strings() -> None:
    catalog = Catalog()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=tools("a"))
    assert catalog.resolve_tool(42) is None  # type: ignore[arg-type]
    assert catalog.resolve_prompt(None) is None  # type: ignore[arg-type]


def test_ten_thousand_tools_build_and_resolve() -> None:
    listed = tools(*(f"tool_{i}" for i in range(10_000)))
    catalog = Catalog()
    started = time.perf_counter()
    catalog.set_server("alpha", priority=0, tools_spec=ALL, tools=listed)
    built = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(10_000):
        assert catalog.resolve_tool(f"alpha__tool_{i}") == ("alpha", f"tool_{i}")
    resolved = time.perf_counter() - started
    print(f"\n10k tools: build {built * 1e3:.1f} ms, 10k resolves {resolved * 1e3:.2f} ms")
    assert len(catalog.tools()) == 10_000


@pytest.mark.parametrize(
    "arguments",
    [
        {"separator": "::"},
        {"separator": ""},
        {"collision": "random"},
        {"max_name_length": 8},
        {"max_name_length": 500},
    ],
)
def test_settings_outside_their_range_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        Catalog(**arguments)


def test_a_priority_outside_0_to_255_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Catalog().set_server("a", priority=256, tools_spec=ALL)


# --- the property -------------------------------------------------------------------------------

_short = st.text(alphabet="abc_-.", min_size=1, max_size=4)
_long = st.text(alphabet="xy", min_size=60, max_size=90)
_odd = st.text(min_size=1, max_size=8)
_tool_name = st.one_of(_short, _short, _long, _odd)
_server = st.tuples(
    st.sampled_from(["a", "b", "a-b", "b-c", "c"]),
    st.integers(min_value=0, max_value=3),
    st.lists(_tool_name, max_size=12),
    st.sampled_from([None, ["a*"], ["*b*", "c"]]),
    st.sampled_from([[], ["*-*"]]),
    st.sampled_from([{}, {"a": "b"}, {"b": "a", "a": "b"}, {"a": "c_d"}]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    servers=st.lists(_server, max_size=5),
    collision=st.sampled_from(["prefix", "priority", "error"]),
    separator=st.sampled_from(["__", "-", ".", "_"]),
    max_name_length=st.sampled_from([16, 24, 64]),
)
def test_every_offered_name_is_distinct_valid_and_routes_back_to_where_it_came_from(
    servers: list[Any], collision: str, separator: str, max_name_length: int
) -> None:
    catalog = Catalog(
        separator=separator,
        collision=collision,  # type: ignore[arg-type]
        max_name_length=max_name_length,
    )
    for slug, priority, listed, allow, deny, rename in servers:
        spec = ToolsSpec(allow=allow, deny=deny, rename=rename)
        entries = [{"name": name, "origin": [slug, name]} for name in listed]
        catalog.set_server(slug, priority=priority, tools_spec=spec, tools=entries)
        catalog.set_server(slug, priority=priority, tools_spec=spec, prompts=entries)
    for offered in (catalog.tools(), catalog.prompts()):
        offered_names = [entry["name"] for entry in offered]
        assert len(set(offered_names)) == len(offered_names)
        for entry in offered:
            assert NAME_PATTERN.fullmatch(entry["name"])
            assert len(entry["name"]) <= max_name_length
    for entry in catalog.tools():
        assert catalog.resolve_tool(entry["name"]) == tuple(entry["origin"])
    for entry in catalog.prompts():
        assert catalog.resolve_prompt(entry["name"]) == tuple(entry["origin"])
    if collision != "error":
        # Nothing is hidden: every prompt (no filters apply to prompts) of every server is there.
        last: dict[str, set[str]] = {}
        for slug, _, listed, *_ in servers:
            last[slug] = set(listed)
        expected = {(slug, name) for slug, listed in last.items() for name in listed}
        assert {catalog.resolve_prompt(e["name"]) for e in catalog.prompts()} == expected


# --- paging -------------------------------------------------------------------------------------


def test_paging_walks_the_whole_list_once() -> None:
    items = list(range(25))
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        chunk, cursor = page(items, cursor, 10, version=3)
        seen.extend(chunk)
        pages += 1
        if cursor is None:
            break
    assert seen == items
    assert pages == 3


def test_a_list_that_fits_one_page_has_no_next_cursor() -> None:
    assert page([1, 2], None, 2, 0) == ([1, 2], None)
    assert page([], None, 5, 0) == ([], None)


def test_a_cursor_from_another_version_is_refused_not_restarted() -> None:
    _, cursor = page(list(range(10)), None, 4, version=1)
    assert cursor is not None
    with pytest.raises(InvalidInput, match=r"^invalid cursor$"):
        page(list(range(10)), cursor, 4, version=2)


def test_a_cursor_follows_a_catalog_across_its_versions() -> None:
    catalog = Catalog()
    catalog.set_server("a", priority=0, tools_spec=ALL, tools=tools(*"abcdef"))
    _, cursor = page(catalog.tools(), None, 2, catalog.version)
    catalog.set_server("b", priority=0, tools_spec=ALL, tools=tools("x"))
    with pytest.raises(InvalidInput):
        page(catalog.tools(), cursor, 2, catalog.version)


def _raw_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        "====",
        "Zm9v",  # "foo"
        "A" * 10_000,
        _raw_cursor({"v": 0, "o": -3}),
        _raw_cursor({"v": 0, "o": 0}),
        _raw_cursor({"v": 0, "o": 10}),
        _raw_cursor({"v": 0, "o": 10**15}),
        _raw_cursor({"v": 0, "o": "3"}),
        _raw_cursor({"v": 0, "o": True}),
        _raw_cursor({"v": 0, "o": 3.0}),
        _raw_cursor({"v": "0", "o": 3}),
        _raw_cursor({"v": 0}),
        _raw_cursor({"v": 0, "o": 3, "x": 1}),
        _raw_cursor([0, 3]),
        _raw_cursor(None),
        "eyJ2IjowLCJvIjoxMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDB9",  # an integer orjson will not read
        "ÿÿÿÿ",
    ],
)
def test_a_bad_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match=r"^invalid cursor$") as caught:
        page(list(range(10)), cursor, 4, version=0)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize("cursor", [3, {"v": 0, "o": 4}, ["x"], b"abc"])
def test_a_cursor_of_the_wrong_type_is_invalid_input(cursor: Any) -> None:
    with pytest.raises(InvalidInput, match=r"^invalid cursor$"):
        page(list(range(10)), cursor, 4, version=0)


def test_a_cursor_we_issued_decodes_to_its_offset() -> None:
    cursor = encode_cursor(7, 4)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert page(list(range(10)), cursor, 4, version=7) == ([4, 5, 6, 7], encode_cursor(7, 8))


def test_a_page_size_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        page([1], None, 0, 0)


@pytest.mark.parametrize(
    ("hints", "merged"),
    [
        ([], (0, "public")),
        ([(None, None)], (0, "public")),
        ([(5000, "public"), (1000, "public")], (1000, "public")),
        ([(5000, "public"), (None, "private")], (5000, "private")),
        ([(None, "public"), (60_000, None)], (60_000, "public")),
        ([(-5, "public")], (0, "public")),
        ([(100, "shared-with-everyone")], (100, "private")),
    ],
)
def test_cache_hints_merge_to_the_shortest_ttl_and_the_narrowest_scope(
    hints: list[tuple[int | None, str | None]], merged: tuple[int, str]
) -> None:
    assert merge_cache_hints(hints) == merged
