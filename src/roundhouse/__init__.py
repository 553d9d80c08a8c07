"""Roundhouse: a gateway and manager for MCP servers."""

__version__ = "0.1.0"
