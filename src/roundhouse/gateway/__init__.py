"""The data plane: MCP frontends, sessions, the catalog, routing and relaying.

What the rest of Roundhouse uses: :class:`Gateway` (built by the manager), the HTTP frontend
:class:`McpHttpApp` (mounted by the API) and the stdio frontend (``roundhouse stdio``).
"""

from roundhouse.gateway.service import Gateway

__all__ = ["Gateway"]
