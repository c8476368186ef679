"""Drives plugboard's MCP server with the official Python SDK (`mcp` on PyPI), for
cli/tests/mcp.rs: lists the tools, calls some, and prints what it saw as one JSON object.

    python3 client.py http URL TOKEN ORDER_ID
    python3 client.py stdio ORDER_ID -- COMMAND ARG...
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def result_of(result):
    """A tool result as plain JSON."""
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
        "error": (result.meta or {}).get("plugboard/error"),
    }


async def exercise(read, write, order_id):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        listed = await session.list_tools()
        tools = {
            t.name: {
                "description": t.description,
                "input_schema": t.input_schema,
                "output_schema": t.output_schema,
                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
            }
            for t in listed.tools
        }
        tagged = await session.call_tool("shopify_add-order-tags", {"id": order_id, "tags": ["vip", "mcp"]})
        # `tags` is required by the action's input schema.
        bad_input = await session.call_tool("shopify_add-order-tags", {"id": order_id})
        # Destructive (it replaces the note), and this client may not call destructive tools.
        destructive = await session.call_tool("shopify_add-order-note", {"id": order_id, "note": "x"})
        unknown = await session.call_tool("no_such-tool", {})
        return {
            "server": init.server_info.name,
            "protocol": init.protocol_version,
            "tools": tools,
            "tagged": result_of(tagged),
            "bad_input": result_of(bad_input),
            "destructive": result_of(destructive),
            "unknown": result_of(unknown),
        }


async def main():
    mode = sys.argv[1]
    if mode == "http":
        url, token, order_id = sys.argv[2], sys.argv[3], int(sys.argv[4])
        async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                summary = await exercise(read, write, order_id)
        # A wrong token is refused before any MCP message is read.
        try:
            async with create_mcp_http_client(headers={"Authorization": "Bearer wrong-token-0123456789"}) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
            summary["wrong_token"] = "accepted"
        except BaseException as e:  # noqa: BLE001 - anyio wraps the HTTP error in a group
            summary["wrong_token"] = "refused: " + repr(e)[:300]
    else:
        order_id = int(sys.argv[2])
        command = sys.argv[sys.argv.index("--") + 1 :]
        params = StdioServerParameters(command=command[0], args=command[1:])
        async with stdio_client(params) as (read, write):
            summary = await exercise(read, write, order_id)
    print(json.dumps(summary))


asyncio.run(main())
