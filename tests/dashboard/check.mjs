// Drives the dashboard in headless Chromium like an operator: connects with the admin token,
// reads the plugin table, clicks an event to see its timeline, watches a new event arrive live,
// replays a dead letter, and keeps a screenshot. Prints what it saw as JSON (the last line) for
// tests/tests/admin_api.rs to assert.
//
//   node check.mjs <base-url> <admin-token> <screenshot.png> <event-id-to-open> <candidate.wasm>
//
// It also replays a recording from the recordings table, and shadows <candidate.wasm> on the
// instance whose recordings are listed.
//
// Once the page follows the event stream it prints `connected` and reads, from standard input,
// the id of an event the test stores then; the page must show it without being reloaded.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
async function nextLine() {
  const { value } = await lines.next();
  return (value || "").trim();
}

const [base, token, screenshot, eventId, candidate] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  await page.goto(base + "/dashboard");
  // A wrong token is refused, and the page says so.
  await page.fill("#token", "wrong-token");
  await page.click("#connect");
  await page.waitForFunction(() => document.querySelector("#status").textContent.includes("refused"));
  seen.wrongToken = await page.textContent("#status");

  await page.fill("#token", token);
  await page.click("#connect");
  await page.waitForSelector("#plugins tbody tr[data-instance]");
  seen.plugins = await page.$$eval("#plugins tbody tr[data-instance]", (rows) =>
    rows.map((r) => ({ id: r.dataset.instance, caps: r.querySelector(".caps").textContent })));

  await page.waitForSelector(`#events tr.event[data-id="${eventId}"]`);
  seen.events = await page.$$eval("#events tr.event", (rows) => rows.length);
  await page.click(`#events tr.event[data-id="${eventId}"]`);
  await page.waitForSelector("#timeline li.hop");
  seen.timeline = await page.textContent("#timeline");
  seen.hops = await page.$$eval("#timeline li.hop", (hops) => hops.length);

  // Live: the list is not polled, so a row for an event stored now comes from the stream.
  await page.waitForFunction(() => document.querySelector("#live").textContent === "live");
  console.log("connected");
  const liveId = await nextLine();
  await page.waitForSelector(`#events tr.event[data-id="${liveId}"]`, { timeout: 20000 });
  seen.live = await page.textContent("#live");
  seen.liveEvent = liveId;

  await page.waitForSelector("#dlq button.replay");
  seen.deadBefore = await page.$$eval("#dlq tbody tr[data-delivery]", (rows) => rows.length);
  await page.click("#dlq button.replay");
  await page.waitForFunction(() => document.querySelectorAll("#dlq tbody tr[data-delivery]").length === 0, null, { timeout: 20000 });
  seen.deadAfter = 0;

  // A recording replayed from its row: identical, on the loaded build.
  await page.waitForSelector("#recordings button.replay-recording");
  await page.click("#recordings button.replay-recording");
  await page.waitForSelector("#replay-result .verdict");
  seen.replay = await page.textContent("#replay-result");
  // A candidate build shadowed on the instance's recordings.
  await page.setInputFiles("#shadow-wasm", candidate);
  await page.click("#shadow-run");
  await page.waitForFunction(() => document.querySelector("#replay-result .verdict")?.textContent.includes("shadow"));
  seen.shadow = await page.textContent("#replay-result");

  await page.waitForSelector("#calls tbody tr td");
  seen.calls = await page.$$eval("#calls tbody tr", (rows) => rows.map((r) => r.textContent));
  seen.chartPoints = await page.$eval("#chart-throughput", (svg) => Number(svg.dataset.points || 0));
  seen.throughput = await page.textContent("#throughput-total");
  seen.errors = errors;
  await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  input.close();
  await browser.close();
}
console.log(JSON.stringify(seen));
