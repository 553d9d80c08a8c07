"""Reading a config file: settings and server specs, with every error naming its line.

A config file is YAML or JSON (``.json``, or any other extension whose text starts with ``{``)
with up to three top-level keys::

    settings:    {port: 8090, port_range: 8100-8200}        # values for Settings fields
    servers:     {github: {transport: {command: npx}}}      # slug -> spec, or a list of specs
    mcpServers:  {"GitHub": {"command": "npx", "args": []}} # Claude Desktop / Cursor style

A file whose only Roundhouse key is ``mcpServers`` is read as a client's config: its other
top-level keys (``globalShortcut``, ``preferences`` …) belong to the client and are ignored.
Otherwise an unknown key is an error, as everywhere else.

The file is untrusted input. It may be at most :data:`MAX_CONFIG_BYTES`; YAML is read with the
safe loader and only the plain YAML tags; aliases (and ``<<`` merge keys) are allowed, but
expanding them may add at most :data:`MAX_ALIAS_NODES` nodes, so a billion-laughs document fails
fast instead of being expanded by whoever walks the data next. Error messages name fields, never
values, since values may be secrets.

The parts: ``reading`` (bytes to parsed data, safely), ``lines`` (key paths to lines),
``validation`` (pydantic errors to one located error), ``mcpservers`` (client-style entries) and
``file`` (the sections together, and settings precedence).
"""

from roundhouse.config.file import ConfigFile, load_config, settings_from_file
from roundhouse.config.reading import MAX_ALIAS_NODES, MAX_CONFIG_BYTES

__all__ = ["MAX_ALIAS_NODES", "MAX_CONFIG_BYTES", "ConfigFile", "load_config", "settings_from_file"]
