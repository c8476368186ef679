//! Where AI clients enter: plugboard as an MCP server. Connector actions become tools an AI
//! client (Claude Desktop, an agent built on an MCP SDK) can list and call, each run in a
//! fresh instance with its operator's grants and limits, and each call recorded as an event.
//!
//! - [`clients`]: who may connect (`[[mcp.client]]`): tokens, the tools each may call, rate and
//!   concurrency limits.
//! - [`tools`]: the catalog: which actions a client sees as tools, named and described as
//!   MCP wants, and the input checks against each action's schema.
//! - [`server`]: the protocol handler (the official Rust SDK, `rmcp`): `tools/list` and
//!   `tools/call`, and the record of every call.
//! - [`http`]: `/mcp` over Streamable HTTP, behind the bearer token and the Origin and Host
//!   checks; `plugboard mcp` serves the same handler over stdio.

pub mod clients;
pub mod http;
pub mod server;
pub mod tools;

pub use clients::{McpClient, McpClients};
pub use server::{McpServer, McpState};
