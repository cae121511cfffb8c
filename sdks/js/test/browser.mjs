// Drives Debian's Chromium (playwright-core) through a site that loads Headwater's tracking script from
// a running collector:  node test/browser.mjs <site url>
// Scenarios, each on its own path of the site (tests/test_tracker.py serves it and checks ClickHouse):
//   /main/     landing page with UTM parameters, SPA navigation by pushState, popstate and replaceState,
//              a custom event, an outbound link click, identify, then the page is closed
//   /dnt/      the same visitor with Do Not Track on: nothing may be sent
//   /consent/  data-consent="required": nothing until headwater.consent(true), then a pageview and an event
//   /cookieless/  data-id="cookieless": events are sent, and nothing is left in the browser's storage
//   /robust/   odd calls (no name, a circular property, a non-boolean consent): none may throw
// Prints a JSON report; page errors make it exit non-zero.
import { chromium } from "playwright-core";

const site = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // no sandbox (tests run as root); no background connections, which a closed network refuses
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = { pageErrors: [], storage: {} };

async function open(path, init) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (error) => report.pageErrors.push(`${path}: ${error.message}`));
  if (init) await page.addInitScript(init);
  await page.goto(site + path);
  await page.waitForFunction(() => window.headwater);
  return { context, page };
}

async function close({ context, page }) {
  await page.close({ runBeforeUnload: true }); // hidden: the rest goes by sendBeacon
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await context.close();
}

// main
{
  const tab = await open("/main/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn");
  const { page } = tab;
  await page.click("#pricing"); // pushState /main/pricing
  await page.click("#docs"); // pushState /main/docs
  await page.goBack(); // popstate: /main/pricing again
  await page.waitForFunction(() => location.pathname == "/main/pricing");
  await page.evaluate(() => history.replaceState({}, "", "/main/pricing?plan=annual"));
  await page.evaluate(() => window.headwater.track("Signed Up", { plan: "pro" }));
  await page.click("#outbound");
  await page.evaluate(() => window.headwater.identify("user-42", { email: "ada@example.com" }));
  report.storage.main = await page.evaluate(() => Object.keys(localStorage).sort());
  await close(tab);
}

// Do Not Track
{
  const tab = await open("/dnt/", () => Object.defineProperty(Navigator.prototype, "doNotTrack", { get: () => "1" }));
  await tab.page.evaluate(() => window.headwater.track("Should Not Arrive"));
  await close(tab);
}

// consent required
{
  const tab = await open("/consent/");
  await tab.page.evaluate(() => window.headwater.track("Before Consent"));
  await tab.page.evaluate(() => window.headwater.consent(true));
  await tab.page.evaluate(() => window.headwater.track("After Consent"));
  await close(tab);
}

// cookieless
{
  const tab = await open("/cookieless/");
  await tab.page.click("#pricing");
  await tab.page.evaluate(() => window.headwater.track("Cookieless Event"));
  report.storage.cookieless = await tab.page.evaluate(() => [Object.keys(localStorage), document.cookie]);
  await close(tab);
}

// odd calls from the host page: none may throw into it
{
  const tab = await open("/robust/");
  report.robust = await tab.page.evaluate(() => {
    const loop = {};
    loop.self = loop;
    const calls = [
      () => window.headwater.track(),
      () => window.headwater.track(null, 5),
      () => window.headwater.identify(),
      () => window.headwater.track("Loop", loop),
      () => window.headwater.consent("maybe"),
      () => history.pushState(null, "", "/robust/next"),
    ];
    return calls.map((call) => {
      try {
        call();
        return "ok";
      } catch (error) {
        return String(error);
      }
    });
  });
  await close(tab);
}

await browser.close();
console.log(JSON.stringify(report));
process.exit(report.pageErrors.length ? 1 : 0);
