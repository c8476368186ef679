//! The Shopify Admin GraphQL stand-in: orders, their customers' order counts, and tags.

use super::*;

fn numeric(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

fn order_node(order: &Value, placed: usize) -> Value {
    let tags: Vec<String> = order["tags"]
        .as_str()
        .map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    json!({
        "id": format!("gid://shopify/Order/{}", order["id"]),
        "name": order["name"],
        "email": order["email"],
        "note": order["note"],
        "tags": tags,
        "displayFinancialStatus": order["financial_status"].as_str().map(str::to_uppercase),
        "totalPriceSet": { "shopMoney": { "amount": order["total_price"], "currencyCode": order["currency"] } },
        "customer": order["customer"]["id"].as_u64().map(|id| json!({
            "id": format!("gid://shopify/Customer/{id}"),
            "email": order["customer"]["email"],
            "numberOfOrders": placed.to_string(),
        })),
    })
}

/// How many of the stand-in's orders the customer of `order` placed.
fn orders_placed(orders: &BTreeMap<u64, Value>, customer: &Value) -> usize {
    orders
        .values()
        .filter(|o| o["customer"]["id"].as_u64().is_some() && o["customer"]["id"] == *customer)
        .count()
}

pub(super) async fn graphql(
    State(state): State<Arc<FakeState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/admin/api/{version}/graphql.json");
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "errors": e }))).into_response(),
    };
    let mut violations = Vec::new();
    if !body["query"].is_string() {
        violations.push("`query` must be a string".into());
    }
    if header(&headers, "content-type").is_none_or(|c| !c.starts_with("application/json")) {
        violations.push("Content-Type must be application/json".into());
    }
    state.record("shopify", &path, &body, violations.clone());
    if header(&headers, "x-shopify-access-token") != Some(SHOPIFY_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
            })),
        )
            .into_response();
    }
    if !violations.is_empty() {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "errors": violations.join("; ") })))
            .into_response();
    }
    if let Some(script) = state.next_script("shopify") {
        return scripted(script);
    }
    let query = body["query"].as_str().unwrap_or("");
    let vars = &body["variables"];
    let cost = json!({ "cost": { "requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0 } } });
    let Ok(mut orders) = state.orders.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let data = if query.contains("tagsAdd(") {
        let id = vars["id"].as_str().and_then(numeric);
        match id.and_then(|id| orders.get_mut(&id)) {
            Some(order) => {
                let mut tags: Vec<String> = order["tags"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                for t in vars["tags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_owned());
                    }
                }
                order["tags"] = json!(tags.join(", "));
                json!({ "tagsAdd": { "node": { "id": vars["id"] }, "userErrors": [] } })
            }
            None => {
                json!({ "tagsAdd": { "node": null, "userErrors": [{ "field": ["id"], "message": "Order does not exist" }] } })
            }
        }
    } else if query.contains("orderUpdate(") {
        let id = vars["input"]["id"].as_str().and_then(numeric);
        match id.and_then(|id| orders.get_mut(&id)) {
            Some(order) => {
                order["note"] = vars["input"]["note"].clone();
                json!({ "orderUpdate": { "order": { "id": vars["input"]["id"], "note": order["note"] }, "userErrors": [] } })
            }
            None => {
                json!({ "orderUpdate": { "order": null, "userErrors": [{ "field": ["id"], "message": "Order does not exist" }] } })
            }
        }
    } else if query.contains("order(id") {
        let order = vars["id"]
            .as_str()
            .and_then(numeric)
            .and_then(|id| orders.get(&id))
            .map(|o| order_node(o, orders_placed(&orders, &o["customer"]["id"])));
        json!({ "order": order })
    } else if query.contains("customer(id") {
        let id = vars["id"].as_str().and_then(numeric);
        let theirs: Vec<&Value> =
            orders.values().filter(|o| id.is_some() && o["customer"]["id"].as_u64() == id).collect();
        let spent: f64 = theirs.iter().filter_map(|o| o["total_price"].as_str()?.parse::<f64>().ok()).sum();
        let customer = theirs.first().map(|o| json!({
            "id": format!("gid://shopify/Customer/{}", o["customer"]["id"]),
            "email": o["customer"]["email"], "firstName": o["customer"]["first_name"], "lastName": o["customer"]["last_name"],
            "numberOfOrders": theirs.len().to_string(), "tags": [],
            "amountSpent": { "amount": format!("{spent:.2}"), "currencyCode": o["currency"] },
        }));
        json!({ "customer": customer })
    } else {
        return axum::Json(json!({ "errors": [{ "message": "This stand-in knows order, customer, tagsAdd and orderUpdate" }] })).into_response();
    };
    axum::Json(json!({ "data": data, "extensions": cost })).into_response()
}
