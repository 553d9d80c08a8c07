"""security.redact: what development-mode errors may show, and production's generic answer."""

from __future__ import annotations

import pytest

from roundhouse.security.redact import GENERIC_ERROR, MAX_ERROR_CHARS, public_error, redact


@pytest.mark.parametrize(
    "path",
    [
        "/home/ann/.local/share/roundhouse/bindery.db",
        "/tmp/pytest-of-ann/x/bindery.db",
        "/etc/passwd",
        "~/.ssh/id_ed25519",
        "/var/lib/postgresql/16/main",
    ],
)
def test_unix_paths_are_redacted(path):
    assert redact(f"cannot open {path}: permission denied") == (
        "cannot open [PATH]: permission denied"
    )


@pytest.mark.parametrize(
    "path",
    [
        r"C:\Users\ann\AppData\Local\roundhouse\bindery.db",
        r"D:\data\bindery.db",
        "C:/Users/ann/bindery.db",
        r"\\fileserver\share\tasks.db",
    ],
)
def test_windows_paths_are_redacted(path):
    assert redact(f"{path} is locked") == "[PATH] is locked"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://bob:s3cret@db.internal/test refused",
            "postgresql://***@db.internal/test refused",
        ),
        ("redis://:hunter2@cache/0", "redis://***@cache/0"),
        ("https://token@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ],
)
def test_credentials_in_urls_are_redacted(text, expected):
    assert redact(text) == expected


def test_a_url_keeps_its_path_but_loses_its_address_and_port():
    assert redact("GET http://127.0.0.1:3000/api/tasks/7 failed") == (
        "GET http://[IP]:[PORT]/api/tasks/7 failed"
    )
    assert redact("http://[::1]:8080/health") == "http://[IP]:[PORT]/health"


def test_secrets_in_a_urls_query_are_redacted():
    assert redact("https://api.example.com/v1?api_key=abc123&x=1") == (
        "https://api.example.com/v1?api_key=[REDACTED]&x=1"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Authorization: Bearer [REDACTED]"),
        ("bearer abcdefghijklmnop", "bearer [REDACTED]"),
        ("authorization=Basic dXNlcjpwYXNzd29yZA==", "authorization=Basic [REDACTED]"),
    ],
)
def test_bearer_and_basic_credentials_are_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=abcdef123", "api_key=[REDACTED]"),
        ("API-KEY: abcdef123", "API-KEY: [REDACTED]"),
        ('{"apikey": "abcdef123"}', '{"apikey": "[REDACTED]"}'),
        ("password=hunter2; user=ann", "password=[REDACTED]; user=ann"),
        ("client_secret: xyz, next", "client_secret: [REDACTED], next"),
        ("OPENAI_API_KEY=sk-live-1", "OPENAI_API_KEY=[REDACTED]"),
    ],
)
def test_key_value_secrets_are_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "token",
    [
        "sk-abcdefghijklmnopqrstuvwx",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "xoxb-1234567890-abcdef",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    ],
)
def test_well_known_token_shapes_are_redacted_anywhere(token):
    assert redact(f"used {token} here") == "used [REDACTED] here"


@pytest.mark.parametrize(
    "address",
    ["10.0.0.7", "192.168.1.20", "127.0.0.1", "255.255.255.255"],
)
def test_ipv4_addresses_are_redacted(address):
    assert redact(f"from {address}.") == "from [IP]."


@pytest.mark.parametrize(
    "address",
    [
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "2001:db8:85a3:0:0:8a2e:370:7334",
        "2001:db8::8a2e:370:7334",
        "::ffff:192.0.2.1",
    ],
)
def test_ipv6_addresses_are_redacted(address):
    assert redact(f"peer {address} left") == "peer [IP] left"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7:5432 refused", "[IP]:[PORT] refused"),
        ("[::1]:8080 refused", "[[IP]]:[PORT] refused"),
        ("localhost:3000 down", "localhost:[PORT] down"),
        ("db.internal:5432 down", "db.internal:[PORT] down"),
        ("listening on port 3000", "listening on port [PORT]"),
        ("ports: 8100", "ports: [PORT]"),
    ],
)
def test_ports_are_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "title must not be empty",
        "task 42 not found",
        "at 10:30:00 UTC, version 1.2.3",
        "3/4 done, and / or",
        "std::vector is not an address",
        "a dependency cycle: 1 -> 2 -> 1",
        "Grüße 🚂",
    ],
)
def test_ordinary_messages_pass_unchanged(text):
    assert redact(text) == text


def test_several_secrets_in_one_message_are_all_redacted():
    text = "connect postgresql://u:p@10.1.2.3:5432/db from /srv/app/run.py with token=abc"
    assert redact(text) == (
        "connect postgresql://***@[IP]:[PORT]/db from [PATH] with token=[REDACTED]"
    )


def test_redaction_is_idempotent():
    text = "open /home/ann/x.db at 10.0.0.1:80 with password=x"
    assert redact(redact(text)) == redact(text)


def test_production_errors_are_generic_whatever_the_message():
    message = "cannot open /home/ann/bindery.db at 10.0.0.1:5432 with password=x"
    assert public_error(message, production=True) == GENERIC_ERROR
    assert public_error(message, production=True, generic="Invalid input.") == "Invalid input."


def test_development_errors_are_detailed_but_redacted():
    message = "cannot open /home/ann/bindery.db at 10.0.0.1:5432 with password=x"
    assert public_error(message, production=False) == (
        "cannot open [PATH] at [IP]:[PORT] with password=[REDACTED]"
    )


def test_development_errors_are_cut_to_a_bounded_length():
    shown = public_error("x" * 100_000, production=False)
    assert len(shown) == MAX_ERROR_CHARS
    assert shown.endswith("...")
