"""Redaction of error text before it leaves the process: paths, credentials, addresses, ports.

Pure: no I/O. Development mode shows errors in detail but through :func:`redact`; production
mode (:func:`public_error` with ``production=True``) shows only a generic message chosen by the
caller for the kind of failure.

What is replaced, and with what:

    http://user:pass@db:5432/x     http://***@db:[PORT]/x     credentials in a URL; its port
    Bearer eyJhbGciOi...           Bearer [REDACTED]
    api_key=abc, password: hunter2 api_key=[REDACTED]          key = value secrets
    sk-..., ghp_..., AKIA...       [REDACTED]                  well-known token shapes
    10.0.0.7, fe80::1, ::1         [IP]
    localhost:8080, port 5432      localhost:[PORT], port [PORT]
    /home/ann/x.db, C:\\Users\\x     [PATH]                      unix, windows and UNC paths

URLs are rewritten as a whole (scheme, credentials, host, port) before the other rules run on
the text around them, so a URL's own path is not mistaken for a file path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = ["GENERIC_ERROR", "MAX_ERROR_CHARS", "public_error", "redact"]

GENERIC_ERROR: Final = "The request could not be completed."
#: An error message is cut to this many characters (after redaction).
MAX_ERROR_CHARS: Final = 1000

_URL: Final = re.compile(
    r"""(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)
        (?P<userinfo>[^@/\s'"<>]*@)?
        (?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s?#'"<>\[\]]+)
        (?P<port>:\d{1,5})?
        (?P<rest>[/?#][^\s'"<>]*)?""",
    re.VERBOSE,
)
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_KEY_VALUE: Final = re.compile(
    r"""(?ix)(?<![/\\.])\b(
        (?:[a-z0-9]+[_-])?(?:api[_-]?key|apikey|secret|password|passwd|pwd|token|access[_-]?key|
        private[_-]?key|client[_-]?secret|auth|authorization|credentials?|session[_-]?id)
    )(["']?\s*[:=]\s*["']?)(?!(?:bearer|basic|token)\s)(?!\[REDACTED\])([^\s"',;&]+)"""
)
_TOKEN_SHAPES: Final = re.compile(
    r"""\b(?:
        sk-[A-Za-z0-9_-]{16,}             # OpenAI-style secret keys
        |gh[pousr]_[A-Za-z0-9]{20,}       # GitHub tokens
        |xox[abposr]-[A-Za-z0-9-]{10,}    # Slack tokens
        |AKIA[0-9A-Z]{16}                 # AWS access key ids
        |eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*   # JWTs
    )""",
    re.VERBOSE,
)
_HEX4: Final = r"[0-9A-Fa-f]{1,4}"
_IPV6: Final = re.compile(
    rf"""(?<![\w:.])(?:
        (?:{_HEX4}(?::{_HEX4})*)?::(?:{_HEX4}:)*(?:\d{{1,3}}\.){{3}}\d{{1,3}}  # IPv4-mapped
        |(?:{_HEX4}:){{7}}{_HEX4}                                      # full form
        |(?:{_HEX4}(?::{_HEX4})*)?::(?:{_HEX4}(?::{_HEX4})*)?          # compressed
    )(?:%[\w.]+)?(?![\w:]|\.\d)""",
    re.VERBOSE,
)
_IPV4: Final = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
# host:port after a name, a bracketed address or a placeholder; and "port 5432" in prose.
_HOST_PORT: Final = re.compile(r"(?<=[A-Za-z\]]):\d{1,5}\b")
_PORT_WORD: Final = re.compile(r"(?i)\b(ports?)(\s*[:=#]?\s*)\d{1,5}\b")
_WINDOWS_PATH: Final = re.compile(
    r"""(?:\b[A-Za-z]:[\\/]|\\\\[^\\\s]+\\)(?:[^\\/\s:*?"<>|,;']+[\\/]?)*"""
)
_UNIX_PATH: Final = re.compile(r"(?<![\w.~/:-])~?/(?:[\w.@%+=-]+/?)+")


def redact(text: str) -> str:
    """``text`` with credentials, addresses, ports and paths replaced by placeholders."""
    out: list[str] = []
    start = 0
    for match in _URL.finditer(text):
        out.append(_redact_plain(text[start : match.start()]))
        out.append(_redact_url(match))
        start = match.end()
    out.append(_redact_plain(text[start:]))
    return "".join(out)


def public_error(message: str, *, production: bool, generic: str = GENERIC_ERROR) -> str:
    """The message a client may see: ``generic`` in production, else ``message`` redacted and
    cut to :data:`MAX_ERROR_CHARS`."""
    if production:
        return generic
    clean = redact(message)
    if len(clean) > MAX_ERROR_CHARS:
        clean = clean[: MAX_ERROR_CHARS - 3] + "..."
    return clean


def _redact_url(match: re.Match[str]) -> str:
    host = match["host"]
    bare = host[1:-1] if host.startswith("[") else host
    if _is_ip(bare):
        host = "[IP]"
    parts = [match["scheme"]]
    if match["userinfo"]:
        parts.append("***@")
    parts.append(host)
    if match["port"]:
        parts.append(":[PORT]")
    if match["rest"]:
        parts.append(_redact_secrets(match["rest"]))
    return "".join(parts)


def _redact_secrets(text: str) -> str:
    text = _BEARER.sub(lambda m: f"{m[1]} [REDACTED]", text)
    text = _KEY_VALUE.sub(lambda m: f"{m[1]}{m[2]}[REDACTED]", text)
    return _TOKEN_SHAPES.sub("[REDACTED]", text)


def _redact_plain(text: str) -> str:
    if not text:
        return text
    text = _redact_secrets(text)
    text = _WINDOWS_PATH.sub("[PATH]", text)
    text = _UNIX_PATH.sub(_path_or_keep, text)
    text = _IPV6.sub(_ip_or_keep, text)
    text = _IPV4.sub(_ip_or_keep, text)
    text = _HOST_PORT.sub(":[PORT]", text)
    return _PORT_WORD.sub(lambda m: f"{m[1]}{m[2]}[PORT]", text)


def _path_or_keep(match: re.Match[str]) -> str:
    # A lone slash ("and / or") or a fraction is not a path.
    path = match[0]
    return "[PATH]" if any(c.isalpha() for c in path) else path


def _ip_or_keep(match: re.Match[str]) -> str:
    candidate = match[0]
    bare = candidate.split("%", 1)[0]
    return "[IP]" if _is_ip(bare) else candidate


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
