"""Frontends: how clients reach the gateway (Streamable HTTP, stdio)."""
