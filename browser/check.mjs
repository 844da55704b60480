// Drives headless Chromium through one of the service's pages and prints
// what it saw as JSON, for the Go browser tests to judge:
//
//   node browser/check.mjs lookup  BASE_URL ORDER_ID
//   node browser/check.mjs swagger BASE_URL
//
// Every report has "console": the page's console errors and warnings,
// failed requests and uncaught exceptions, so a test can insist on none
// (a Content-Security-Policy violation shows up there).
import { chromium } from "playwright-core";

const [mode, base, id] = process.argv.slice(2);
const timeout = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The flags keep Chromium off the network it cannot reach here, and
  // let it run as root without a sandbox.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage();
page.setDefaultTimeout(timeout);
const console_ = [];
page.on("console", (m) => {
  if (m.type() !== "error" && m.type() !== "warning") return;
  // The lookup of an unknown id is meant to get a 404.
  if (m.location().url?.includes("/api/models/cache/no-such-order")) return;
  console_.push(`${m.type()}: ${m.text()} (${m.location().url})`);
});
page.on("pageerror", (e) => console_.push(`exception: ${e.message}`));
page.on("requestfailed", (r) => console_.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

const texts = (selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent));

async function lookup() {
  const report = {};

  // Type the id and submit, as a person would.
  await page.goto(`${base}/`);
  await page.fill("#id", id);
  await page.press("#id", "Enter");
  await page.waitForSelector("#order:not([hidden])");
  report.url = page.url();
  report.title = await page.textContent("#order-title");
  report.summary = await texts("#summary dd");
  report.delivery = await texts("#delivery dd");
  report.payment = await texts("#payment dd");
  report.items = await page.$$eval("#items tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  // Elements that order content could have smuggled in as markup.
  report.injected = await page.$$eval("#order img, #order script, #order iframe, #order b, #order svg", (els) => els.length);
  report.pwned = await page.evaluate(() => window.pwned === true);

  // A link to the lookup shows the same order.
  await page.goto(`${base}/?id=${encodeURIComponent(id)}`);
  await page.waitForSelector("#order:not([hidden])");
  report.linkedTitle = await page.textContent("#order-title");

  // An unknown id says so.
  await page.goto(`${base}/?id=no-such-order`);
  await page.waitForFunction(() => document.querySelector("#status").textContent.includes("no-such-order"));
  report.unknownStatus = await page.textContent("#status");
  report.unknownHidden = await page.$eval("#order", (e) => e.hidden);
  return report;
}

async function swagger() {
  await page.goto(`${base}/swagger/index.html`);
  await page.waitForSelector(".opblock");
  const operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((b) => {
      const method = b.querySelector(".opblock-summary-method")?.textContent.trim();
      const path = b.querySelector(".opblock-summary-path")?.getAttribute("data-path");
      return `${method} ${path}`;
    }));
  const title = await page.textContent(".info .title");
  // The bearer scheme in swagger.json shows as an Authorize button.
  const authorize = (await page.$(".auth-wrapper .authorize")) !== null;
  return { title, operations, authorize };
}

let report;
try {
  report = mode === "lookup" ? await lookup() : mode === "swagger" ? await swagger() : { error: `unknown mode ${mode}` };
} catch (err) {
  report = { error: err.message };
}
report.console = console_;
await browser.close();
console.log(JSON.stringify(report));
