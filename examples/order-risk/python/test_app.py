"""order-risk's tests against the SDK's fake host: `python3 -m pytest`."""

import json

import pytest
from plugboard_sdk import InvalidInput, RateLimited, Upstream
from plugboard_sdk.testing import FakeHost, event

from app import OrderRisk, describe

GRAPHQL = "https://shop.example/admin/api/2025-07/graphql.json"
ORDER = {
    "id": 1001,
    "name": "#1001",
    "email": "jon@example.com",
    "total_price": "1249.00",
    "currency": "EUR",
    "note": "ship to a different address, card mismatch",
    "customer": {"id": 7},
    "billing_address": {"address1": "1 Main St", "zip": "1011", "city": "Amsterdam"},
    "shipping_address": {"address1": "9 Dock Rd", "zip": "3011", "city": "Rotterdam"},
}
RISKY = {"risk": "high", "risk_score": 0.91, "sentiment": "negative", "reasons": ["address mismatch"]}


def host(**config):
    h = FakeHost(config={"alert_channel": "C0FRAUD", "shopify_base_url": "https://shop.example", **config})
    h.http.on("POST", GRAPHQL, json={"data": {"customer": {"numberOfOrders": "3"}}})
    return h


def test_a_risky_order_is_assessed_announced_and_tagged():
    h = host()
    h.ai.reply(RISKY, model="gpt-test")
    with h:
        out = OrderRisk().handle(event("orders/create", ORDER, id="e-1"))
    assert [e.kind for e in out] == ["orders/assessed", "alerts/slack", "alerts/shopify-tag"]
    assert out[0].decoded() == {
        "order_id": 1001,
        "name": "#1001",
        "risk": "high",
        "risk_score": 0.91,
        "sentiment": "negative",
        "reasons": ["address mismatch"],
        "risky": True,
        "model": "gpt-test",
    }
    assert out[0].attributes == [("order_id", "1001")]
    assert out[1].decoded()["channel"] == "C0FRAUD"
    assert "looks risky: high risk, score 0.91" in out[1].decoded()["text"]
    assert out[2].decoded() == {"id": 1001, "tags": ["fraud-risk-high"]}
    # The order count came from the Admin API with the token's placeholder, never the token.
    sent = h.http.requests[0]
    assert ("x-shopify-access-token", "{{secret:shopify_access_token}}") in sent.headers
    assert json.loads(sent.body_bytes)["variables"] == {"id": "gid://shopify/Customer/7"}
    prompt = h.ai.requests[0].messages[1].content
    assert "customer with 2 previous orders" in prompt and "card mismatch" in prompt
    assert h.ai.requests[0].response_format == "json_schema"


def test_a_calm_order_is_only_assessed():
    h = host()
    h.ai.reply({"risk": "low", "risk_score": 0.1, "sentiment": "positive", "reasons": []})
    with h:
        out = OrderRisk().handle(event("orders/create", {**ORDER, "note": "Thanks!"}))
    assert [e.kind for e in out] == ["orders/assessed"]
    assert out[0].decoded()["risky"] is False


def test_without_the_order_count_the_model_is_told_and_the_reason_logged():
    h = FakeHost(config={"alert_channel": "C0FRAUD", "shopify_base_url": "https://shop.example"})
    h.http.on("POST", GRAPHQL, status=403, json={"errors": "forbidden"})
    h.ai.reply(RISKY)
    with h:
        OrderRisk().handle(event("orders/create", ORDER))
    assert "order history unknown" in h.ai.requests[0].messages[1].content
    assert h.logs[0].level == "warn" and "Unauthorized" in h.logs[0].message


def test_other_events_and_bad_orders():
    with host():
        assert OrderRisk().handle(event("orders/paid", ORDER)) == []
        with pytest.raises(InvalidInput, match="no id"):
            OrderRisk().handle(event("orders/create", {"name": "#1"}))
        with pytest.raises(InvalidInput):
            OrderRisk().handle(event("orders/create", raw=b"[1, 2"))


def test_a_model_answer_that_is_not_an_assessment_is_retried_and_so_is_a_rate_limit():
    h = host()
    h.ai.reply({"risk": "high"}).fail(RateLimited(2000))
    with h:
        with pytest.raises(Upstream, match="not an assessment"):
            OrderRisk().handle(event("orders/create", ORDER))
        with pytest.raises(RateLimited):
            OrderRisk().handle(event("orders/create", ORDER))


def test_describe_tolerates_missing_fields():
    assert describe({}, None) == (
        "Order ? for ?  by unknown email (customer's order history unknown).\n"
        "Billing address: ?,  \nShipping address: ?,  \nCustomer note: (none)"
    )


def test_a_score_that_is_not_a_finite_number_is_not_an_assessment():
    h = host()
    h.ai.reply('{"risk": "high", "risk_score": 1e400, "sentiment": "neutral", "reasons": []}')
    with h, pytest.raises(Upstream, match="not an assessment"):
        OrderRisk().handle(event("orders/create", ORDER))
    assert [f"{x:.2f}" for x in (0.125, 0.375, -0.0)] == ["0.12", "0.38", "-0.00"]
