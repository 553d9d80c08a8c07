"""Bindery: the task and content manager bundled with Roundhouse, so that a new gateway has
something real to serve.

It has two parts, two processes (the contract between them is ``docs/BINDERY.md``):

- :mod:`roundhouse.bindery.backend` (``roundhouse bindery serve``): the HTTP service that owns the
  database (SQLite or Postgres), with a REST API, a JSON-RPC 2.0 endpoint and pool figures.
- :mod:`roundhouse.bindery.face` (``roundhouse bindery mcp``): the stdio MCP server with the 14
  task tools, which launches the backend and reaches it over HTTP.
"""
