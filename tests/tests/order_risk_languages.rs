//! Flow 1's order-risk step is written three times: in Rust (`examples/order-risk/plugin`), and
//! with the SDKs in Python (`examples/order-risk/python`) and TypeScript
//! (`examples/order-risk/typescript`). Each runs in the real host with the
//! example's own configuration, is fed the same signed Shopify webhooks, and must produce the same
//! events, send requests that the official API descriptions accept, and leave the same trace.

use plugboard_demo::flow::Flow;
use serde_json::Value;

/// What order-risk produced for each order: (kind, payload, attributes), in the order produced.
type Produced = Vec<(String, Value, Value)>;

/// Orders that cover what the step decides: risky (announced and tagged), calm, a big total with
/// a calm note, and one whose customer the shop does not know (no order count).
const ORDERS: [(u64, &str, &str); 4] = [
    (1001, "ship to a different address, card mismatch", "1249.00"),
    (1002, "Thanks, love your shop!", "35.00"),
    (1003, "", "9999.99"),
    (1004, "prepaid card please, it is a gift", "80.00"),
];

async fn run(order_risk: Option<&std::path::Path>) -> (Vec<Produced>, Vec<String>) {
    let rust_build = "../../target/wasm-guests/wasm32-wasip2/guest/order_risk.wasm".to_owned();
    let edits: Vec<(String, String)> =
        order_risk.map(|p| vec![(rust_build, p.display().to_string())]).unwrap_or_default();
    let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let flow = Flow::start_with("order-risk", &edits).await.unwrap();
    for (id, _, total) in ORDERS {
        if id != 1003 {
            flow.fakes.state.add_order(plugboard_demo::sample_order(id, "", total));
        }
    }
    let mut produced = Vec::new();
    for (id, note, total) in ORDERS {
        assert_eq!(flow.send_order(id, note, total, &format!("w-{id}")).await.unwrap(), 200);
        // One at a time, so that each order's events are its own.
        flow.settled().await.unwrap();
        let created = flow.find_event("orders/create", "order_id", &id.to_string()).await.unwrap().unwrap();
        let trace = flow.admin(&format!("/v1/events/{}", created["id"].as_str().unwrap())).await.unwrap();
        let step = &trace["deliveries"][0];
        assert_eq!(
            (step["target"].as_str(), step["status"].as_str()),
            (Some("order-risk"), Some("delivered")),
            "{trace}"
        );
        let mut events: Produced = Vec::new();
        for p in step["produced"].as_array().unwrap() {
            let e = &p["event"];
            let payload =
                flow.admin(&format!("/v1/events/{}/payload", e["id"].as_str().unwrap())).await.unwrap();
            // The plugin's own attributes; the host's lineage ones differ from run to run.
            let attributes: Vec<Value> = e["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a[0] != "caused_by" && !a[0].as_str().unwrap().starts_with("plugboard."))
                .cloned()
                .collect();
            events.push((e["kind"].as_str().unwrap().to_owned(), payload, Value::from(attributes)));
        }
        produced.push(events);
    }
    (produced, flow.violations())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_orders_give_the_same_events_in_rust_python_and_typescript() {
    let python = plugboard_tests::python_order_risk().unwrap();
    let typescript = plugboard_tests::typescript_order_risk().unwrap();
    let (rust_events, rust_violations) = run(None).await;
    let (python_events, python_violations) = run(Some(&python)).await;
    let (typescript_events, typescript_violations) = run(Some(&typescript)).await;
    assert_eq!(rust_violations, Vec::<String>::new());
    assert_eq!(python_violations, Vec::<String>::new());
    assert_eq!(typescript_violations, Vec::<String>::new());

    // The Rust step decides as the flow expects: the first and last orders are risky.
    let kinds = |events: &Produced| events.iter().map(|(k, _, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&rust_events[0]), ["orders/assessed", "alerts/slack", "alerts/shopify-tag"]);
    assert_eq!(kinds(&rust_events[1]), ["orders/assessed"]);
    assert_eq!(kinds(&rust_events[3]), ["orders/assessed", "alerts/slack", "alerts/shopify-tag"]);
    assert_eq!(rust_events[0][0].1["risky"], true, "{:?}", rust_events[0]);
    // And the Python and TypeScript steps produced the same events, payloads and attributes.
    for (i, rust) in rust_events.iter().enumerate() {
        assert_eq!(Some(rust), python_events.get(i), "Python, order {}", ORDERS[i].0);
        assert_eq!(Some(rust), typescript_events.get(i), "TypeScript, order {}", ORDERS[i].0);
    }
    assert_eq!(rust_events.len(), python_events.len());
    assert_eq!(rust_events.len(), typescript_events.len());
}
