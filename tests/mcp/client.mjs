// Drives plugboard's MCP server with the official TypeScript SDK (@modelcontextprotocol/sdk),
// for cli/tests/mcp.rs: lists the tools, calls some, and prints what it saw as one JSON object.
//
//   node client.mjs http URL TOKEN ORDER_ID
//   node client.mjs stdio ORDER_ID -- COMMAND ARG...

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const resultOf = (r) => ({
  is_error: Boolean(r.isError),
  structured: r.structuredContent ?? null,
  text: (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text),
  error: r._meta?.["plugboard/error"] ?? null,
});

async function exercise(transport, orderId) {
  const client = new Client({ name: "plugboard-test", version: "1.0.0" });
  await client.connect(transport);
  const listed = await client.listTools();
  const tools = Object.fromEntries(
    listed.tools.map((t) => [
      t.name,
      {
        description: t.description ?? null,
        input_schema: t.inputSchema,
        output_schema: t.outputSchema ?? null,
        annotations: t.annotations ?? null,
      },
    ]),
  );
  const tagged = await client.callTool({ name: "shopify_add-order-tags", arguments: { id: orderId, tags: ["vip", "mcp"] } });
  // `tags` is required by the action's input schema.
  const badInput = await client.callTool({ name: "shopify_add-order-tags", arguments: { id: orderId } });
  // Destructive (it replaces the note), and this client may not call destructive tools.
  const destructive = await client.callTool({ name: "shopify_add-order-note", arguments: { id: orderId, note: "x" } });
  const unknown = await client.callTool({ name: "no_such-tool", arguments: {} });
  const summary = {
    server: client.getServerVersion()?.name ?? null,
    protocol: transport.protocolVersion ?? null,
    tools,
    tagged: resultOf(tagged),
    bad_input: resultOf(badInput),
    destructive: resultOf(destructive),
    unknown: resultOf(unknown),
  };
  await client.close();
  return summary;
}

const [mode, ...rest] = process.argv.slice(2);
let summary;
if (mode === "http") {
  const [url, token, orderId] = rest;
  const headers = { Authorization: `Bearer ${token}` };
  summary = await exercise(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }), Number(orderId));
  // A wrong token is refused before any MCP message is read.
  try {
    const wrong = { Authorization: "Bearer wrong-token-0123456789" };
    const client = new Client({ name: "plugboard-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: wrong } }));
    summary.wrong_token = "accepted";
  } catch (e) {
    summary.wrong_token = `refused: ${String(e).slice(0, 300)}`;
  }
} else {
  const orderId = Number(rest[0]);
  const command = rest.slice(rest.indexOf("--") + 1);
  const transport = new StdioClientTransport({ command: command[0], args: command.slice(1), stderr: "inherit" });
  summary = await exercise(transport, orderId);
}
console.log(JSON.stringify(summary));
