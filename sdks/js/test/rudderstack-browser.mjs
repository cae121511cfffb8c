// RudderStack's browser SDK (@rudderstack/analytics-js, its bundled build: no plugin or config fetched
// from a CDN) in Debian's Chromium, on a page served from http://127.0.0.1:<site port>, sending to a
// running collector, once event by event and once in batches, before any identify: the SDK sends
// "userId": "" then. Prints every answer the collector gave, as JSON, for tests/test_sdks.py.
//   node test/rudderstack-browser.mjs <collector url> <public write key> <anonymous id prefix> <site port>
import { createServer } from "node:http";

import { build } from "esbuild";
import { chromium } from "playwright-core";

const [collector, writeKey, prefix, sitePort] = process.argv.slice(2);
const ORIGIN = `http://127.0.0.1:${sitePort}`;

const bundle = (await build({
  stdin: { contents: 'import { RudderAnalytics } from "@rudderstack/analytics-js/bundled";\n' +
                     "window.rudderanalytics = new RudderAnalytics();", resolveDir: process.cwd() },
  bundle: true, format: "iife", write: false, logLevel: "silent",
})).outputFiles[0].text;

const sourceConfig = {
  source: {
    id: "headwater-test", name: "shop", workspaceId: "headwater", writeKey, enabled: true, transient: false,
    sourceDefinitionId: "javascript", updatedAt: "2026-01-01T00:00:00.000Z", destinations: [],
    config: { statsCollection: { errors: { enabled: false }, metrics: { enabled: false } } },
    liveEventsConfig: { eventUpload: false },
  },
};

async function visit(browser, mode) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const answers = [];
  if (process.env.DEBUG) { page.on("console", (m) => console.error("console", m.text())); page.on("request", (r) => console.error("request", r.method(), r.url())); page.on("pageerror", (e) => console.error("pageerror", String(e))); }
  page.on("response", async (response) => {
    if (response.url().startsWith(collector) && response.request().method() === "POST") {
      answers.push({ mode, url: response.url(), status: response.status(), body: await response.text() });
    }
  });
  await page.goto(`${ORIGIN}/pricing`);
  await page.evaluate(({ writeKey, collector, sourceConfig, mode, anonymousId }) => new Promise((resolve) => {
    const batch = mode === "batch" ? { batch: { enabled: true, maxItems: 10, flushInterval: 500 } } : {};
    window.rudderanalytics.load(writeKey, collector, {
      getSourceConfig: () => sourceConfig, plugins: [], queueOptions: { maxRetryDelay: 1000, ...batch },
      storage: { type: "memoryStorage" }, logLevel: "ERROR",
    });
    window.rudderanalytics.ready(() => {
      window.rudderanalytics.setAnonymousId(anonymousId);
      window.rudderanalytics.page("Docs", "Pricing");
      window.rudderanalytics.track("Plan Viewed", { plan: "pro" });
      resolve();
    });
  }), { writeKey, collector, sourceConfig, mode, anonymousId: `${prefix}-${mode}` });
  const deadline = Date.now() + 20000;
  while (answers.length < (mode === "batch" ? 1 : 2) && Date.now() < deadline) await page.waitForTimeout(200);
  await page.waitForTimeout(1000);  // any retry would show here
  await context.close();
  return answers;
}

const site = createServer((request, response) => {
  response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  response.end(`<!doctype html><title>Shop</title><script>${bundle}</script>`);
});
await new Promise((resolve) => site.listen(Number(sitePort), "127.0.0.1", resolve));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const answers = [...await visit(browser, "single"), ...await visit(browser, "batch")];
  console.log(JSON.stringify({ answers }));
} finally {
  await browser.close();
  site.close();
}
