"""``python -m roundhouse.bindery.backend --port P --db PATH|URL``: the same as
``roundhouse bindery serve``, without importing the CLI."""

from __future__ import annotations

import argparse
import sys

from roundhouse.bindery.backend.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roundhouse.bindery.backend")
    parser.add_argument("--db", required=True, help="a SQLite file path or a postgresql:// URL")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    return run(args.db, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
