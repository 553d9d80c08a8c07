"""``python -m roundhouse``: the same as the ``roundhouse`` command."""

from roundhouse.cli import main

main()
