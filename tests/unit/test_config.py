"""Config files: real files in tmp_path, every error with the exact line it names."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from roundhouse.config import MAX_CONFIG_BYTES, ConfigFile, load_config, settings_from_file
from roundhouse.errors import ConfigFileError, InvalidInput
from roundhouse.spec import HttpTransport, StdioTransport

CLAUDE_DESKTOP_CONFIG = """\
{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]
    },
    "GitHub Tools": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_secret123"}
    },
    "remote": {
      "type": "http",
      "url": "https://mcp.example.com/mcp",
      "headers": {"Authorization": "Bearer abc"}
    },
    "time": {"command": "uvx", "args": ["mcp-server-time"], "disabled": true}
  },
  "preferences": {"quickEntryShortcut": "off"}
}
"""


@pytest.fixture(autouse=True)
def no_roundhouse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ROUNDHOUSE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> ConfigFileError:
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    return caught.value


# -- valid files ---------------------------------------------------------------------------------


def test_a_yaml_file_with_settings_and_servers_by_slug_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        settings:
          port: 9000
          port_range: 8300-8400
        servers:
          github:
            name: GitHub
            transport: {command: npx, args: [-y, server-github], env: {TOKEN: x}}
            instances: 2
          remote:
            transport: {type: http, url: "https://example.com/mcp"}
            tags: [team]
        """,
    )
    config = load_config(path)
    assert config.settings == {"port": 9000, "port_range": "8300-8400"}
    assert [spec.slug for spec in config.servers] == ["github", "remote"]
    github, remote = config.servers
    assert github.name == "GitHub"
    assert isinstance(github.transport, StdioTransport)
    assert github.transport.args == ["-y", "server-github"]
    assert github.instances.min == 2
    assert isinstance(remote.transport, HttpTransport)
    assert remote.tags == ["team"]


def test_a_json_file_with_a_list_of_full_specs_is_read(tmp_path: Path) -> None:
    document = {
        "settings": {"host": "127.0.0.1"},
        "servers": [
            {"slug": "one", "transport": {"command": "python", "args": ["-m", "one"]}},
            {"slug": "two", "transport": {"type": "http", "url": "http://127.0.0.1:9/mcp"}},
        ],
    }
    path = tmp_path / "roundhouse.json"
    path.write_text(json.dumps(document, indent=2))
    config = load_config(path)
    assert config == ConfigFile(settings={"host": "127.0.0.1"}, servers=config.servers)
    assert [spec.slug for spec in config.servers] == ["one", "two"]


def test_a_claude_desktop_config_is_accepted_as_is(tmp_path: Path) -> None:
    path = write(tmp_path, "claude_desktop_config.json", CLAUDE_DESKTOP_CONFIG)
    config = load_config(path)
    assert config.settings == {}
    by_slug = {spec.slug: spec for spec in config.servers}
    assert list(by_slug) == ["filesystem", "github-tools", "remote", "time"]
    github = by_slug["github-tools"]
    assert github.name == "GitHub Tools"
    assert isinstance(github.transport, StdioTransport)
    assert github.transport.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_secret123"}
    remote = by_slug["remote"].transport
    assert isinstance(remote, HttpTransport)
    assert remote.url == "https://mcp.example.com/mcp"
    assert remote.headers == {"Authorization": "Bearer abc"}
    assert by_slug["time"].enabled is False
    assert by_slug["filesystem"].enabled is True


def test_cursor_style_entries_with_type_and_approval_lists_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mcp.json",
        """\
        {"mcpServers": {
          "a": {"type": "stdio", "command": "node", "args": ["a.js"], "autoApprove": ["x"]},
          "b": {"type": "sse", "url": "http://localhost:3000/sse"},
          "c": {"transport": "streamable-http", "url": "http://localhost:3001/mcp"}
        }}
        """,
    )
    slugs = [(spec.slug, spec.transport.type) for spec in load_config(path).servers]
    assert slugs == [("a", "stdio"), ("b", "sse"), ("c", "http")]


def test_a_file_with_another_extension_is_sniffed_as_json_or_yaml(tmp_path: Path) -> None:
    as_json = write(tmp_path, "config", '{"servers": {"x": {"transport": {"command": "a"}}}}')
    as_yaml = write(tmp_path, "config.conf", "servers:\n  x: {transport: {command: a}}\n")
    assert load_config(as_json).servers == load_config(as_yaml).servers


def test_modest_aliases_and_merge_keys_are_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        defaults: &defaults
          timeouts: {start: 5}
          tags: [shared]
        """,
    )
    # ``defaults`` is not a Roundhouse key; anchors live under servers instead.
    assert error_of(path).line == 1
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          one: &base
            transport: {command: a}
            timeouts: {start: 5}
          two:
            <<: *base
            priority: 7
        """,
    )
    one, two = load_config(path).servers
    assert two.timeouts.start == 5 and two.priority == 7 and one.priority == 0


# -- errors naming their line --------------------------------------------------------------------


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          github:
            transport: {command: npx
          other: 1
        """,
    )
    error = error_of(path)
    assert error.line == 4
    assert "invalid YAML" in error.message
    assert error.message.startswith(f"{path}, line 4: ")


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        """\
        {
          "mcpServers": {
            "a": {"command": "npx",}
          }
        }
        """,
    )
    error = error_of(path)
    assert error.line == 3
    assert "invalid JSON" in error.message


def test_a_bad_slug_names_the_line_of_its_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          good:
            transport: {command: a}
          Bad_Slug:
            transport: {command: b}
        """,
    )
    error = error_of(path)
    assert error.line == 4
    assert "servers.Bad_Slug: not a valid slug" in error.message


def test_an_empty_command_names_its_line_and_field_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          github:
            transport:
              args: [x]
              command: ""
        """,
    )
    error = error_of(path)
    assert error.line == 5
    assert "servers.github.transport.command: String should have at least 1 character" in str(error)


def test_an_empty_command_in_a_claude_entry_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        """\
        {
          "mcpServers": {
            "github": {
              "command": "  "
            }
          }
        }
        """,
    )
    error = error_of(path)
    assert error.line == 4
    assert "mcpServers.github.command: command must not be empty" in error.message


def test_an_unknown_field_deep_inside_a_spec_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          github:
            transport: {command: a}
            health:
              interval: 10
              intervall: 20
        """,
    )
    error = error_of(path)
    assert error.line == 6
    assert "servers.github.health.intervall: unknown field" in error.message


def test_a_wrong_type_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.json",
        """\
        {
          "servers": [
            {
              "slug": "one",
              "transport": {"command": "a"},
              "priority": "high"
            }
          ]
        }
        """,
    )
    error = error_of(path)
    assert error.line == 6
    assert "servers[0].priority: Input should be a valid integer" in error.message


def test_several_problems_are_reported_from_the_first_line_on(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          one:
            priority: 300
            transport: {command: ""}
        """,
    )
    error = error_of(path)
    assert error.line == 3
    assert "servers.one.priority" in error.message
    assert "line 4: servers.one.transport.command" in error.message


def test_an_inverted_port_range_in_settings_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        settings:
          port: 9000
          port_range: [8200, 8100]
        """,
    )
    error = error_of(path)
    assert error.line == 3
    assert "settings.port_range: port_range 8200-8100 is inverted" in error.message


def test_an_unknown_settings_key_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "roundhouse.yaml", "settings:\n  port: 1\n  prot: 2\n")
    error = error_of(path)
    assert error.line == 3
    assert "settings.prot: unknown field" in error.message


def test_a_settings_value_of_the_wrong_type_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "roundhouse.yaml", "settings:\n  host: h\n  port: lots\n")
    assert error_of(path).line == 3


def test_two_mcp_server_names_with_the_same_slug_are_an_error_naming_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        """\
        {
          "mcpServers": {
            "GitHub": {"command": "a"},
            "other": {"command": "b"},
            "github": {"command": "c"}
          }
        }
        """,
    )
    error = error_of(path)
    assert error.line == 5
    assert "'github'" in error.message and "'GitHub' (line 3)" in error.message
    assert "slug 'github'" in error.message


def test_duplicate_slugs_in_a_server_list_are_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          - slug: one
            transport: {command: a}
          - slug: one
            transport: {command: b}
        """,
    )
    error = error_of(path)
    assert error.line == 4
    assert "servers[1] and servers[0] (line 2) both map to slug 'one'" in error.message


def test_a_slug_in_servers_and_mcp_servers_at_once_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          git: {transport: {command: a}}
        mcpServers:
          Git: {command: b}
        """,
    )
    assert error_of(path).line == 4


def test_a_duplicate_yaml_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        servers:
          one: {transport: {command: a}}
          one: {transport: {command: b}}
        """,
    )
    error = error_of(path)
    assert error.line == 3
    assert "duplicate key 'one' (first at line 2)" in error.message


def test_a_duplicate_json_key_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        '{\n\t"mcpServers": {\n\t\t"a": {"command": "x"},\n\t\t"a": {"command": "y"}\n\t}\n}\n',
    )
    assert error_of(path).line == 4


def test_a_json_file_indented_with_tabs_still_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        '{\n\t"mcpServers": {\n\t\t"a": {\n\t\t\t"command": "x",\n'
        '\t\t\t"cwdir": "/"\n\t\t}\n\t}\n}\n',
    )
    error = error_of(path)
    assert error.line == 5
    assert "mcpServers.a.cwdir: unknown field" in error.message


def test_an_mcp_entry_with_both_command_and_url_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        '{"mcpServers": {\n "a": {"command": "x", "url": "http://h/mcp"}\n}}\n',
    )
    assert error_of(path).line == 2


def test_an_mcp_type_that_contradicts_the_entry_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        '{"mcpServers": {\n "a": {\n  "command": "x",\n  "type": "http"\n }\n}}\n',
    )
    error = error_of(path)
    assert error.line == 4
    assert "mcpServers.a.type" in error.message


def test_an_unknown_top_level_key_next_to_roundhouse_keys_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "roundhouse.yaml", "settings: {}\nmcpServers: {}\nglobalShortcut: x\n")
    error = error_of(path)
    assert error.line == 3
    assert "globalShortcut: unknown top-level key" in error.message


def test_a_non_mapping_top_level_is_an_error_on_line_1(tmp_path: Path) -> None:
    for name, text in [("a.yaml", "- one\n- two\n"), ("b.json", "[1, 2]"), ("c.yaml", "hello")]:
        error = error_of(write(tmp_path, name, text))
        assert error.line == 1
        assert "must be a mapping" in error.message


def test_a_missing_file_is_a_config_file_error(tmp_path: Path) -> None:
    error = error_of(tmp_path / "nope.yaml")
    assert "cannot read" in error.message


# -- hostile input -------------------------------------------------------------------------------


def test_a_file_over_4_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("settings: {}\n" + "#" * MAX_CONFIG_BYTES)
    error = error_of(path)
    assert "larger than 4 MiB" in error.message


def test_a_billion_laughs_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    lines.append("servers: {x: {transport: {command: a, args: *i}}}")
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    error = error_of(path)
    assert time.monotonic() - started < 2
    assert "aliases expand to more than" in error.message
    assert error.line is not None


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "servers: &loop [*loop]\n")
    assert "aliases expand" in error_of(path).message


def test_a_python_tag_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "evil.yaml",
        f"""\
        settings:
          host: !!python/object/apply:os.system ["touch {marker}"]
        """,
    )
    error = error_of(path)
    assert error.line == 2
    assert "!!python/object/apply:os.system is not allowed" in error.message
    assert not marker.exists()


def test_non_utf8_bytes_are_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("settings:\n  host: caf\xe9\n".encode("latin-1"))
    error = error_of(path)
    assert error.line == 2
    assert "not UTF-8" in error.message


@pytest.mark.parametrize("value", ["2024-13-45", "9" * 5000])
def test_a_value_yaml_cannot_build_names_its_line(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "odd.yaml", f"settings:\n  host: h\n  log_level: {value}\n")
    error = error_of(path)
    assert error.line == 3
    assert "invalid YAML" in error.message


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_bytes(b"\xef\xbb\xbf" + CLAUDE_DESKTOP_CONFIG.encode())
    assert len(load_config(path).servers) == 4


def test_args_next_to_a_url_are_rejected_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path, "c.json", '{"mcpServers": {"a": {\n"url": "http://h/mcp",\n"args": []}}}'
    )
    error = error_of(path)
    assert error.line == 3
    assert "mcpServers.a.args: unknown field" in error.message


def test_a_control_character_in_yaml_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ctl.yaml", "settings:\n  host: a\x00b\n")
    assert error_of(path).line == 2


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_an_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    assert "empty config file" in error_of(write(tmp_path, "empty.yaml", text)).message


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    for name in ("deep.yaml", "deep.json"):
        path = write(tmp_path, name, '{"servers": ' + "[" * 20_000 + "]" * 20_000 + "}")
        assert "nested too deeply" in error_of(path).message


def test_errors_never_show_secret_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "claude.json",
        '{"mcpServers": {"a": {"command": "x", "env": {"TOKEN": 12345678}}}}',
    )
    error = error_of(path)
    assert "mcpServers.a.env.TOKEN" in error.message
    assert "12345678" not in error.message


# -- settings precedence -------------------------------------------------------------------------


def test_file_settings_are_validated_without_reading_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUNDHOUSE_PORT", "not-a-port")
    path = write(tmp_path, "roundhouse.yaml", "settings:\n  port: 9000\n")
    assert load_config(path).settings == {"port": 9000}


def test_the_environment_beats_the_file_and_overrides_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "roundhouse.yaml",
        """\
        settings:
          port: 9000
          host: 10.0.0.1
          port_range: 8300-8400
          log_level: debug
        """,
    )
    config = load_config(path)
    monkeypatch.setenv("ROUNDHOUSE_PORT", "9100")
    monkeypatch.setenv("ROUNDHOUSE_HOST", "10.0.0.2")
    settings = settings_from_file(config, host="10.0.0.3", log_level=None)
    assert settings.port == 9100  # env over file
    assert settings.host == "10.0.0.3"  # override over env
    assert settings.port_range == (8300, 8400)  # file over default
    assert settings.log_level == "debug"  # a None override is ignored
    assert settings.max_body_bytes == 1 << 20  # default


def test_settings_from_an_empty_config_are_the_defaults_plus_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUNDHOUSE_PORT_RANGE", "9000-9001")
    settings = settings_from_file(ConfigFile())
    assert settings.port_range == (9000, 9001)
    assert settings.host == "127.0.0.1"


def test_an_invalid_override_is_invalid_input_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        settings_from_file(ConfigFile(), port=70000)
    assert caught.value.field == "port"
