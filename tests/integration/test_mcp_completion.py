"""completion/complete through both endpoints, against server-everything (npm), both client eras.

On the aggregate endpoint the prompt's name is the namespaced one; the gateway must hand the
upstream its own name back, and route a resource template's completion by the template's URI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from .served import Served, serve_everything

MODES = ["legacy", "2026-07-28"]
TEMPLATE = "demo://resource/dynamic/text/{resourceId}"


@pytest.fixture
async def everything(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve_everything(tmp_path) as served:
        yield served


def values(result: types.CompleteResult) -> list[str]:
    return list(result.completion.values)


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_argument_completes_through_the_aggregate_endpoint(everything, mode):
    async with Client(everything.mcp(), mode=mode) as client:
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "everything__completable-prompt" in prompts
        ref = types.PromptReference(type="ref/prompt", name="everything__completable-prompt")
        assert values(await client.complete(ref, {"name": "department", "value": "S"})) == [
            "Sales",
            "Support",
        ]
        # The context (an earlier argument) reaches the upstream too.
        narrowed = await client.complete(
            ref, {"name": "name", "value": "A"}, context_arguments={"department": "Engineering"}
        )
        assert values(narrowed) == ["Alice"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_argument_completes_through_the_server_endpoint(everything, mode):
    async with Client(everything.mcp("everything"), mode=mode) as client:
        ref = types.PromptReference(type="ref/prompt", name="completable-prompt")
        result = await client.complete(ref, {"name": "department", "value": "Mar"})
        assert values(result) == ["Marketing"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_resource_template_completes_by_its_uri(everything, mode):
    async with Client(everything.mcp(), mode=mode) as client:
        ref = types.ResourceTemplateReference(type="ref/resource", uri=TEMPLATE)
        result = await client.complete(ref, {"name": "resourceId", "value": "1"})
        assert result.completion.values, "server-everything offers ids for its template"
        assert all(v.isdigit() for v in result.completion.values)


@pytest.mark.parametrize("mode", MODES)
async def test_a_completion_for_an_unknown_prompt_or_template_is_invalid_params(everything, mode):
    async with Client(everything.mcp(), mode=mode) as client:
        for ref in (
            types.PromptReference(type="ref/prompt", name="everything__no-such-prompt"),
            types.PromptReference(type="ref/prompt", name="completable-prompt"),  # not namespaced
            types.ResourceTemplateReference(type="ref/resource", uri="nowhere://x/{id}"),
        ):
            with pytest.raises(MCPError) as raised:
                await client.complete(ref, {"name": "department", "value": "S"})
            assert raised.value.error.code == -32602, ref
        # Nothing was disturbed: a good completion still works on the same session.
        good = types.PromptReference(type="ref/prompt", name="everything__completable-prompt")
        assert values(await client.complete(good, {"name": "department", "value": "E"})) == [
            "Engineering"
        ]
