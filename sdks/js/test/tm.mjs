// Drives Debian's Chromium (playwright-core) through pages that load a tag manager container from a
// running collector:  node test/tm.mjs <plan.json>
// The plan (tests/integration/test_tag_manager.py writes it) lists visits: a URL, the browser context
// to use (a context is one person: visits in the same one share cookies and storage), Do Not Track,
// and actions (click, submit, push to the data layer, scroll, pushState, goto, wait). Requests to
// https://pixel.test/ (the tags' pixels and scripts) are answered here and noted. Prints a JSON report
// per visit: the pixels hit (their query parameters), the debug panel's text, the container's log,
// whether anything injected ran (window.pwned), the page's errors and whether its own script ran.
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const contexts = {};
const report = {};
const GIF = Buffer.from("R0lGODlhAQABAAAAACw=", "base64");

async function context(name, dnt) {
  if (contexts[name]) return contexts[name];
  const made = await browser.newContext();
  if (dnt) await made.addInitScript(() => Object.defineProperty(Navigator.prototype, "doNotTrack", { get: () => "1" }));
  await made.route("https://pixel.test/**", (route) => {
    const url = new URL(route.request().url());
    made.hits.push(Object.fromEntries(url.searchParams));
    const js = url.pathname.endsWith(".js");
    return route.fulfill({ status: 200, contentType: js ? "text/javascript" : "image/gif",
      body: js ? "window.scriptTagRan = (window.scriptTagRan || 0) + 1;" : GIF });
  });
  made.hits = [];
  return (contexts[name] = made);
}

const act = {
  click: (page, selector) => page.click(selector),
  submit: (page, selector) => page.click(selector),
  push: (page, message) => page.evaluate((m) => window.hwDataLayer.push(m), message),
  scroll: (page) => page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight)),
  pushState: (page, path) => page.evaluate((p) => history.pushState({}, "", p), path),
  goto: (page, url) => page.goto(url),
  wait: (page, ms) => page.waitForTimeout(ms),
};

for (const visit of plan.visits) {
  const ctx = await context(visit.context || visit.name, visit.dnt);
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const seen = ctx.hits.length;
  await page.goto(visit.url);
  await page.waitForFunction((c) => window.hwTagManager && window.hwTagManager[c], visit.container);
  for (const [name, arg] of visit.actions || []) await act[name](page, arg);
  await page.waitForTimeout(visit.wait_ms || 700);
  report[visit.name] = {
    hits: ctx.hits.slice(seen),
    ...(await page.evaluate((c) => ({
      panel: document.getElementById("hw-tm-debug") ? document.getElementById("hw-tm-debug").textContent : null,
      log: window.hwTagManager[c].log,
      version: window.hwTagManager[c].version,
      preview: window.hwTagManager[c].preview,
      pwned: !!window.pwned,
      pageScriptRan: !!window.pageScriptRan,
      scriptTagRan: window.scriptTagRan || 0,
    }), visit.container)),
    errors,
  };
  await page.close({ runBeforeUnload: true }); // the tracker sends what it holds by sendBeacon
}
await new Promise((resolve) => setTimeout(resolve, 1000));
await browser.close();
console.log(JSON.stringify(report));
