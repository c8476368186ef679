"""Flow 1's decision step in Python: the same plugin as `../plugin` (Rust), event for event.

It handles `orders/create` events from the Shopify connector: looks up how many orders the
customer has placed (the Admin GraphQL API's `Customer.numberOfOrders`: the webhook's customer
object has had no order count since API version 2022-04), asks the AI provider for a structured
assessment (fraud risk, a score, the customer's sentiment, reasons), returns `orders/assessed`,
and for a risky order also returns `alerts/slack` (routed to the Slack connector's
`post-message`) and `alerts/shopify-tag` (routed to the Shopify connector's `add-order-tags`).

Config: `alert_channel` (Slack channel id), `risk_tag` (default `fraud-risk-high`), `min_score`
(default 0.7: a `high` risk or a score at least this high is risky), and for the order count
`shop` (`example.myshopify.com`) or `shopify_base_url`, `api_version` (default `2025-07`),
`access_token_secret` (default `shopify_access_token`). Without `shop` or `shopify_base_url`,
or when the lookup fails (logged), the model is told the customer's history is unknown.
Grants: `ai`, `config`, `log`, and for the order count `http` to the shop with the secret.

Build: `./build.sh` (componentize-py); test: `python3 -m pytest`.
"""

import math
from typing import Any, Optional

from plugboard_sdk import (
    Capability,
    Connector,
    Event,
    InvalidInput,
    Metadata,
    NewEvent,
    PluginError,
    Upstream,
    ai,
    config,
    export,
    http,
    log,
)

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["risk", "risk_score", "sentiment", "reasons"],
    "properties": {
        "risk": {"type": "string", "enum": ["low", "medium", "high"]},
        "risk_score": {"type": "number"},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
}

SYSTEM = (
    "You review e-commerce orders for a fraud team. Judge the fraud risk from the order's facts and "
    "the customer's sentiment from their note. Be terse."
)


def field(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, or None where a step is missing or not an object."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def text(value: Any, default: str) -> str:
    return value if isinstance(value, str) else default


def unsigned(value: Any) -> Optional[int]:
    """A JSON number that is a whole, non-negative 64-bit integer."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def orders_placed(order: dict[str, Any]) -> Optional[int]:
    """How many orders the order's customer has placed, this one included, from the Admin GraphQL
    API; None when no shop is configured or the order has no customer."""
    gid = field(order, "customer", "admin_graphql_api_id")
    number = unsigned(field(order, "customer", "id"))
    if isinstance(gid, str):
        customer = gid
    elif number is not None:
        customer = f"gid://shopify/Customer/{number}"
    else:
        return None
    base = config.get("shopify_base_url")
    if base is None:
        shop = config.get("shop")
        if shop is None:
            return None
        base = f"https://{shop}"
    version = config.get("api_version", "2025-07")
    secret = config.get("access_token_secret", "shopify_access_token")
    query = "query CustomerOrders($id: ID!) { customer(id: $id) { numberOfOrders } }"
    response = (
        http.post(f"{base.rstrip('/')}/admin/api/{version}/graphql.json")
        .header("x-shopify-access-token", http.secret(secret))
        .json({"query": query, "variables": {"id": customer}})
        # A query: safe to repeat on a 429 or 5xx.
        .retry()
        .send()
    )
    if not response.is_success:
        raise response.error("the customer's order count")
    # `UnsignedInt64` is a string in GraphQL's JSON.
    count = field(response.json(), "data", "customer", "numberOfOrders")
    # As Rust's u64 parser reads it: digits, an optional `+`.
    digits = count.removeprefix("+") if isinstance(count, str) else ""
    if digits.isascii() and digits.isdigit() and int(digits) < 2**64:
        return int(digits)
    return None


def describe(order: dict[str, Any], placed: Optional[int]) -> str:
    """What the model sees: the order's facts that bear on fraud, and the customer's own words."""

    def address(a: Any) -> str:
        return f"{text(field(a, 'address1'), '?')}, {text(field(a, 'zip'), '')} {text(field(a, 'city'), '')}"

    history = (
        f"customer with {max(placed - 1, 0)} previous orders"
        if placed is not None
        else "customer's order history unknown"
    )
    return (
        f"Order {text(order.get('name'), '?')} for {text(order.get('total_price'), '?')} "
        f"{text(order.get('currency'), '')} by {text(order.get('email'), 'unknown email')} ({history}).\n"
        f"Billing address: {address(order.get('billing_address'))}\n"
        f"Shipping address: {address(order.get('shipping_address'))}\n"
        f"Customer note: {text(order.get('note'), '(none)')}"
    )


def assessment(answer: ai.ChatResponse) -> dict[str, Any]:
    """The model's answer, checked against the schema's types (the provider enforces the rest)."""
    value = answer.json()
    ok = (
        isinstance(value, dict)
        and isinstance(value.get("risk"), str)
        and isinstance(value.get("risk_score"), (int, float))
        and not isinstance(value.get("risk_score"), bool)
        and math.isfinite(value["risk_score"])
        and isinstance(value.get("sentiment"), str)
        and isinstance(value.get("reasons"), list)
        and all(isinstance(r, str) for r in value["reasons"])
    )
    if not ok:
        raise Upstream(200, f"model {answer.model} answered JSON that is not an assessment")
    return value


class OrderRisk(Connector):
    def metadata(self) -> Metadata:
        return (
            Metadata("order-risk", "0.1.0", "Assesses new orders with AI and raises risky ones")
            .produces("orders/assessed")
            .produces("alerts/slack")
            .produces("alerts/shopify-tag")
            .requests(Capability.AI, Capability.HTTP, Capability.CONFIG, Capability.LOG)
        )

    def handle(self, event: Event) -> list[NewEvent]:
        if event.kind != "orders/create":
            return []
        order = event.json()
        order_id = unsigned(field(order, "id"))
        if order_id is None:
            raise InvalidInput("the order has no id")
        # Without the count the model is told the history is unknown: an assessment without it
        # beats none, and the reason is logged for the operator (a missing grant, say).
        try:
            placed = orders_placed(order)
        except PluginError as e:
            log.warn(f"the customer's order count is unavailable: {e!r}", event=event.id)
            placed = None
        answer = (
            ai.Chat().system(SYSTEM).user(describe(order, placed)).temperature(0.0).json_schema(SCHEMA).send()
        )
        verdict = assessment(answer)
        risk, score, sentiment, reasons = (
            verdict["risk"],
            float(verdict["risk_score"]),
            verdict["sentiment"],
            verdict["reasons"],
        )
        try:
            min_score = float(config.get("min_score") or "0.7")
        except ValueError:
            min_score = 0.7
        risky = risk == "high" or score >= min_score
        log.info(
            f"order {order_id} assessed: risk {risk} ({score:.2f}), sentiment {sentiment}",
            event=event.id,
            model=answer.model,
        )
        name = text(order.get("name"), "?")
        assessed = {
            "order_id": order_id,
            "name": name,
            "risk": risk,
            "risk_score": score,
            "sentiment": sentiment,
            "reasons": reasons,
            "risky": risky,
            "model": answer.model,
        }
        out = [NewEvent.json("orders/assessed", assessed).with_attribute("order_id", str(order_id))]
        if risky:
            channel = config.require("alert_channel")
            tag = config.get("risk_tag", "fraud-risk-high")
            why = ", ".join(reasons) if reasons else "no reason given"
            message = (
                f":rotating_light: Order {name} ({text(order.get('total_price'), '?')} "
                f"{text(order.get('currency'), '')}) looks risky: {risk} risk, score {score:.2f}; "
                f"customer sentiment {sentiment}. Reasons: {why}."
            )
            out.append(NewEvent.json("alerts/slack", {"channel": channel, "text": message}))
            out.append(NewEvent.json("alerts/shopify-tag", {"id": order_id, "tags": [tag]}))
        return out


Plugin, ActionHints = export(OrderRisk)
