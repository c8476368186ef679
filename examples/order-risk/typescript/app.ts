// Flow 1's decision step in TypeScript: the same plugin as `../plugin` (Rust) and `../python`,
// event for event.
//
// It handles `orders/create` events from the Shopify connector: looks up how many orders the
// customer has placed (the Admin GraphQL API's `Customer.numberOfOrders`: the webhook's customer
// object has had no order count since API version 2022-04), asks the AI provider for a structured
// assessment (fraud risk, a score, the customer's sentiment, reasons), returns `orders/assessed`,
// and for a risky order also returns `alerts/slack` (routed to the Slack connector's
// `post-message`) and `alerts/shopify-tag` (routed to the Shopify connector's `add-order-tags`).
//
// Config: `alert_channel` (Slack channel id), `risk_tag` (default `fraud-risk-high`),
// `min_score` (default 0.7: a `high` risk or a score at least this high is risky), and for the
// order count `shop` (`example.myshopify.com`) or `shopify_base_url`, `api_version` (default
// `2025-07`), `access_token_secret` (default `shopify_access_token`). Without `shop` or
// `shopify_base_url`, or when the lookup fails (logged), the model is told the customer's
// history is unknown. Grants: `ai`, `config`, `log`, and for the order count `http` to the shop
// with the secret.
//
// Build: `npm install && npm run build`; test: `npm test`.

import {
  ai,
  config,
  Connector,
  type Event,
  exportConnector,
  http,
  InvalidInput,
  log,
  Metadata,
  NewEvent,
  PluginError,
  Upstream,
} from '@plugboard/sdk';

export const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['risk', 'risk_score', 'sentiment', 'reasons'],
  properties: {
    risk: { type: 'string', enum: ['low', 'medium', 'high'] },
    risk_score: { type: 'number' },
    sentiment: { type: 'string', enum: ['positive', 'neutral', 'negative'] },
    reasons: { type: 'array', items: { type: 'string' } },
  },
};

const SYSTEM =
  "You review e-commerce orders for a fraud team. Judge the fraud risk from the order's facts and " +
  "the customer's sentiment from their note. Be terse.";

type Json = any;

/** `value[path[0]][path[1]]...`, or undefined where a step is missing or not an object. */
function field(value: Json, ...path: string[]): Json {
  for (const key of path) {
    value = typeof value === 'object' && value !== null && !Array.isArray(value) ? value[key] : undefined;
  }
  return value;
}

const text = (value: Json, fallback: string): string => (typeof value === 'string' ? value : fallback);

/** A JSON number that is a whole, non-negative integer (JSON.parse keeps 64-bit ids only up to
 * 2^53 exactly: the ids here are order numbers, well below). */
function unsigned(value: Json): number | undefined {
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** How many orders the order's customer has placed, this one included, from the Admin GraphQL
 * API; undefined when no shop is configured or the order has no customer. */
function ordersPlaced(order: Json): number | undefined {
  const gid = field(order, 'customer', 'admin_graphql_api_id');
  const number = unsigned(field(order, 'customer', 'id'));
  let customer: string;
  if (typeof gid === 'string') customer = gid;
  else if (number !== undefined) customer = `gid://shopify/Customer/${number}`;
  else return undefined;
  let base = config.get('shopify_base_url');
  if (base === undefined) {
    const shop = config.get('shop');
    if (shop === undefined) return undefined;
    base = `https://${shop}`;
  }
  const version = config.get('api_version', '2025-07');
  const secret = config.get('access_token_secret', 'shopify_access_token');
  const query = 'query CustomerOrders($id: ID!) { customer(id: $id) { numberOfOrders } }';
  const response = http
    .post(`${base.replace(/\/+$/, '')}/admin/api/${version}/graphql.json`)
    .header('x-shopify-access-token', http.secret(secret))
    .json({ query, variables: { id: customer } })
    // A query: safe to repeat on a 429 or 5xx.
    .retry()
    .send();
  if (!response.isSuccess) {
    throw response.error("the customer's order count");
  }
  // `UnsignedInt64` is a string in GraphQL's JSON.
  const count = field(response.json(), 'data', 'customer', 'numberOfOrders');
  // As Rust's u64 parser reads it: digits, an optional `+`.
  return typeof count === 'string' && /^\+?[0-9]{1,19}$/.test(count) ? Number(count) : undefined;
}

/** What the model sees: the order's facts that bear on fraud, and the customer's own words. */
export function describe(order: Json, placed: number | undefined): string {
  const address = (a: Json) => `${text(field(a, 'address1'), '?')}, ${text(field(a, 'zip'), '')} ${text(field(a, 'city'), '')}`;
  const history = placed === undefined ? "customer's order history unknown" : `customer with ${Math.max(placed - 1, 0)} previous orders`;
  return (
    `Order ${text(order.name, '?')} for ${text(order.total_price, '?')} ${text(order.currency, '')} ` +
    `by ${text(order.email, 'unknown email')} (${history}).\n` +
    `Billing address: ${address(order.billing_address)}\n` +
    `Shipping address: ${address(order.shipping_address)}\n` +
    `Customer note: ${text(order.note, '(none)')}`
  );
}

/** `x` with two decimals as Rust's `{:.2}` writes it: an exact tie rounds to even (0.125 ->
 * "0.12", where `toFixed` gives "0.13"), and -0 keeps its sign. */
export function fixed2(x: number): string {
  if (Object.is(x, -0)) return '-0.00';
  const scaled = x * 100;
  if (Number.isInteger(x * 200) && !Number.isInteger(scaled)) {
    const down = Math.floor(scaled);
    return ((down % 2 === 0 ? down : down + 1) / 100).toFixed(2);
  }
  return x.toFixed(2);
}

interface Assessment {
  risk: string;
  risk_score: number;
  sentiment: string;
  reasons: string[];
}

/** The model's answer, checked against the schema's types (the provider enforces the rest). */
function assessment(answer: ai.ChatResponse): Assessment {
  const v = answer.json();
  const ok =
    typeof v === 'object' &&
    v !== null &&
    typeof v.risk === 'string' &&
    typeof v.risk_score === 'number' &&
    Number.isFinite(v.risk_score) &&
    typeof v.sentiment === 'string' &&
    Array.isArray(v.reasons) &&
    v.reasons.every((r: unknown) => typeof r === 'string');
  if (!ok) {
    throw new Upstream(200, `model ${answer.model} answered JSON that is not an assessment`);
  }
  return v;
}

export class OrderRisk extends Connector {
  metadata() {
    return new Metadata('order-risk', '0.1.0', 'Assesses new orders with AI and raises risky ones')
      .produces('orders/assessed')
      .produces('alerts/slack')
      .produces('alerts/shopify-tag')
      .requests('ai', 'http', 'config', 'log');
  }

  handle(event: Event): NewEvent[] {
    if (event.kind !== 'orders/create') {
      return [];
    }
    const order = event.json();
    const id = unsigned(field(order, 'id'));
    if (id === undefined) {
      throw new InvalidInput('the order has no id');
    }
    // Without the count the model is told the history is unknown: an assessment without it
    // beats none, and the reason is logged for the operator (a missing grant, say).
    let placed: number | undefined;
    try {
      placed = ordersPlaced(order);
    } catch (e) {
      if (!(e instanceof PluginError)) throw e;
      log.warn(`the customer's order count is unavailable: ${e.name}: ${e.message}`, { event: event.id });
    }
    const answer = new ai.Chat().system(SYSTEM).user(describe(order, placed)).temperature(0).jsonSchema(SCHEMA).send();
    const { risk, risk_score: score, sentiment, reasons } = assessment(answer);
    // As the Rust step parses it: a number written plainly, else the default.
    const configured = config.get('min_score');
    const parsed = configured !== undefined && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(configured) ? Number(configured) : NaN;
    const minScore = Number.isNaN(parsed) ? 0.7 : parsed;
    const risky = risk === 'high' || score >= minScore;
    log.info(`order ${id} assessed: risk ${risk} (${fixed2(score)}), sentiment ${sentiment}`, { event: event.id, model: answer.model });
    const name = text(order.name, '?');
    const out = [
      NewEvent.json('orders/assessed', { order_id: id, name, risk, risk_score: score, sentiment, reasons, risky, model: answer.model }).withAttribute(
        'order_id',
        id,
      ),
    ];
    if (risky) {
      const channel = config.require('alert_channel');
      const tag = config.get('risk_tag', 'fraud-risk-high');
      const why = reasons.length ? reasons.join(', ') : 'no reason given';
      const message =
        `:rotating_light: Order ${name} (${text(order.total_price, '?')} ${text(order.currency, '')}) looks risky: ` +
        `${risk} risk, score ${fixed2(score)}; customer sentiment ${sentiment}. Reasons: ${why}.`;
      out.push(NewEvent.json('alerts/slack', { channel, text: message }));
      out.push(NewEvent.json('alerts/shopify-tag', { id, tags: [tag] }));
    }
    return out;
  }
}

export const { plugin, actionHints } = exportConnector(OrderRisk);
