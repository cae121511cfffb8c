// Opens every dashboard page in Debian's Chromium and reports what each shows, as JSON on stdout, for
// tests/test_dashboard.py to compare with the query library and with the events it loaded.
//
// Environment: DASHBOARD (base URL), ADMIN_TOKEN, READ_TOKEN, PROJECT, EMPTY_PROJECT, STATE (the query
// string of the range holding the loaded events), STEPS (JSON list of funnel steps), COLLECTOR and
// WRITE_KEY (to send an event while the live page is open), LIVE_ID (its messageId), NEW_FLOW (a flow
// document to save on the Flow page), SCREENSHOTS (a directory for one PNG per page), PEOPLE_PROJECT (the
// People pages' project), ALERTS_PROJECT (a project with alert rules, a channel and one alert raised) and
// DISCOVER_PROJECT with DISCOVER_STATE, DISCOVER_TARGET and DISCOVER_PATH (planted sessions to discover).
import { chromium } from "playwright-core";

const env = process.env;
const base = env.DASHBOARD;
const project = env.PROJECT;
const state = env.STATE;
const shots = env.SCREENSHOTS;
const report = { pages: {}, phone: {}, access: {} };

const texts = (page, selector, attribute) =>
  page.$$eval(selector, (nodes, attr) => nodes.map((n) => n.getAttribute(attr)), attribute);

async function open(page, path) {
  const response = await page.goto(base + path, { waitUntil: "networkidle" });
  return response.status();
}

async function overview(page) {
  const status = await open(page, `/p/${project}/overview${state}`);
  await page.waitForSelector("[data-chart=trend][data-drawn=true] canvas", { state: "attached" });
  const metrics = await page.$$eval("[data-metric]", (nodes) =>
    Object.fromEntries(nodes.map((n) => [n.dataset.metric, Number(n.dataset.value)])));
  const blocks = await page.$$eval("[data-block]", (nodes) => Object.fromEntries(nodes.map((n) => [
    n.dataset.block,
    [...n.querySelectorAll("[data-row]")].map((r) => [r.dataset.row, Number(r.dataset.count)]),
  ])));
  const axis = await page.$eval("[data-chart=trend]", (box) => ({
    shown: JSON.parse(box.dataset.xRange),
    range: JSON.parse(box.dataset.range),
  }));
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });  // the one full-length shot
  return { status, metrics, blocks, axis };
}

async function funnels(page) {
  const steps = JSON.parse(env.STEPS).map((s) => `step=${encodeURIComponent(s)}`).join("&");
  const status = await open(page, `/p/${project}/funnels${state}&${steps}&window=86400`);
  const rows = await page.$$eval("[data-step]", (nodes) =>
    nodes.map((n) => ({ step: Number(n.dataset.step), visitors: Number(n.dataset.visitors) })));
  await page.screenshot({ path: `${shots}/funnels.png` });
  return { status, rows };
}

async function retention(page) {
  const status = await open(page, `/p/${project}/retention${state}&period=day&periods=3`);
  const cohorts = await page.$$eval("[data-cohort]", (nodes) => nodes.map((n) => ({
    cohort: n.dataset.cohort, size: Number(n.dataset.size),
    cells: [...n.querySelectorAll("td.cell")].map((c) => [Number(c.dataset.k), Number(c.dataset.visitors)]),
  })));
  await page.screenshot({ path: `${shots}/retention.png` });
  return { status, cohorts };
}

async function sessions(page) {
  const status = await open(page, `/p/${project}/sessions${state}`);
  const list = await page.$$eval("[data-session]", (nodes) =>
    nodes.map((n) => ({ id: n.dataset.session, events: Number(n.dataset.events) })));
  const fresh = await page.$eval("[data-new-sessions]", (n) =>
    [Number(n.dataset.newSessions), Number(n.dataset.returningSessions)]);
  await page.screenshot({ path: `${shots}/sessions.png` });
  await page.click(`[data-session="${list[0].id}"] a`);
  await page.waitForSelector("[data-block=timeline]");
  const timeline = await texts(page, "[data-block=timeline] li", "data-event");
  await page.screenshot({ path: `${shots}/session-timeline.png` });
  return { status, list, first: list[0].id, timeline, fresh };
}

async function people(page) {
  const base = `/p/${env.PEOPLE_PROJECT}/people`;
  const rows = () => page.$$eval("[data-person]", (nodes) => nodes.filter((n) => n.tagName === "TR").map((n) => ({
    person: n.dataset.person, ids: Number(n.dataset.ids), events: Number(n.dataset.events) })));
  const status = await open(page, `${base}${state}`);
  const list = await rows();
  await page.screenshot({ path: `${shots}/people.png` });
  await Promise.all([page.waitForNavigation(), page.selectOption("select[name=count]", "ids")]);
  const countIds = (await rows()).map((r) => r.person);
  await open(page, `${base}${state}`);
  await page.fill("[data-people-search] input[name=q]", "alice@example.com");
  await Promise.all([page.waitForNavigation(), page.click("[data-people-search] button")]);
  const search = (await rows()).map((r) => r.person);
  await Promise.all([page.waitForNavigation(), page.click("tr[data-person=alice] a")]);
  await page.waitForSelector("[data-block=profile]");
  const person = {
    status: 200,
    person: await page.getAttribute("[data-block=profile]", "data-person"),
    ids: await texts(page, "[data-block=ids] [data-id]", "data-id"),
    traits: Object.fromEntries(await page.$$eval("[data-trait]", (n) => n.map((d) => [d.dataset.trait, d.textContent]))),
    devices: await texts(page, "[data-device]", "data-device"),
    sessions: (await page.textContent("[data-field=sessions]")).trim(),
    timeline: await texts(page, "[data-block=person-timeline] li", "data-visitor"),
  };
  await page.screenshot({ path: `${shots}/person.png`, fullPage: true });
  await open(page, `${base}/phone`);
  person.by_device_id = await page.getAttribute("[data-block=profile]", "data-person");
  await open(page, `${base}${state}`);
  const cohorts = Object.fromEntries(await page.$$eval("[data-block=cohorts] [data-cohort]", (rows) =>
    rows.map((r) => [r.dataset.cohort, Number(r.dataset.members)])));
  await Promise.all([page.waitForNavigation(), page.click("tr[data-cohort=team-plan] [data-cohort-link]")]);
  await page.waitForSelector("[data-metric=visitors]");
  const metric = (name) => page.$eval(`[data-metric=${name}]`, (n) => Number(n.dataset.value));
  const cohortOverview = { visitors: await metric("visitors"), pageviews: await metric("pageviews"),
                           chip: (await page.textContent("a.chip[data-filter=cohort]")).trim() };
  await page.screenshot({ path: `${shots}/overview-cohort.png` });
  const unknownCohort = await open(page, `/p/${env.PEOPLE_PROJECT}/overview${state}&cohort=whales`);
  await open(page, `/p/${env.PEOPLE_PROJECT}/overview${state}`);
  await Promise.all([page.waitForNavigation(), page.check("input[name=by][value=cohorts]")]);
  const chart = await page.waitForSelector("[data-chart=trend][data-drawn=true]");
  const trendByCohort = { by: new URL(page.url()).searchParams.get("by"), series: await chart.getAttribute("data-series"),
                          lines: Number(await chart.getAttribute("data-lines")),
                          heading: (await page.textContent("section.panel h2")).trim() };
  await page.screenshot({ path: `${shots}/overview-by-cohort.png` });
  await open(page, `/p/${env.PEOPLE_PROJECT}/funnels${state}&step=%2F&step=%2Fpricing&by=cohorts`);
  const funnelsByCohort = Object.fromEntries(await page.$$eval("[data-block=funnel][data-segment]", (blocks) =>
    blocks.map((b) => [b.dataset.segment, [...b.querySelectorAll("[data-step]")].map((r) => Number(r.dataset.visitors))])));
  await open(page, `/p/${env.PEOPLE_PROJECT}/retention${state}&period=day&periods=3&by=cohorts`);
  const retentionByCohort = Object.fromEntries(await page.$$eval("[data-segment-grid]", (grids) =>
    grids.map((g) => [g.dataset.segmentGrid, [...g.querySelectorAll("[data-cohort]")].map((r) => [
      r.dataset.cohort, Number(r.dataset.size),
      [...r.querySelectorAll("td.cell")].map((c) => Number(c.dataset.visitors))])])));
  await page.screenshot({ path: `${shots}/retention-by-cohort.png` });
  return { status, list, count_ids: countIds, search, person, cohorts, cohort_overview: cohortOverview,
           unknown_cohort: unknownCohort, trend_by_cohort: trendByCohort, funnels_by_cohort: funnelsByCohort, retention_by_cohort: retentionByCohort };
}

async function trendCells(page) {
  return page.$$eval("[data-line]", (cells) => cells.reduce((lines, cell) => {
    (lines[cell.dataset.line] = lines[cell.dataset.line] || []).push(Number(cell.dataset.value));
    return lines;
  }, {}));
}

// Two series by unique persons beside their previous period; then one event broken down by a custom
// property, with a condition on it typed into the filter bar as a person would.
async function trends(page) {
  const status = await open(page, `/p/${project}/trends${state}&series=%2F&series=%2Fpricing&metric=persons&compare=previous`);
  await page.waitForSelector("[data-chart=trend][data-drawn=true] canvas", { state: "attached" });
  const compared = { lines: await trendCells(page), drawn: Number(await page.$eval("[data-chart=trend]", (b) => b.dataset.lines)) };
  await page.screenshot({ path: `${shots}/trends.png` });
  await open(page, `/p/${project}/trends${state}&series=Signed%20Up&breakdown=properties.plan`);
  await page.click("[data-controls] details.filters summary");
  await page.fill("[data-controls] input[name=where] >> nth=-1", "properties.plan:eq:pro");
  await Promise.all([page.waitForNavigation(), page.click("[data-controls] > button")]);
  await page.waitForSelector("[data-chart=trend][data-drawn=true]", { state: "attached" });
  const filtered = { url: page.url(), lines: await trendCells(page),
                     chips: await texts(page, "[data-condition]", "data-condition") };
  return { status, compared, filtered };
}

const rows = (page, block, ...fields) => page.$$eval(`[data-block=${block}] [data-row]`, (nodes, names) =>
  nodes.map((n) => [n.dataset.row, ...names.map((f) => (isNaN(Number(n.dataset[f])) ? n.dataset[f] : Number(n.dataset[f])))]), fields);

// A shop's goals on the overview, then the goal picked in the filter bar as a person would; a goal as
// a funnel step; the revenue page.
async function shop(page) {
  const shop = env.SHOP_PROJECT;
  const status = await open(page, `/p/${shop}/overview${state}`);
  const goals = await page.$$eval("[data-block=goals] [data-row]", (nodes) => nodes.map((n) => [
    n.dataset.row, Number(n.dataset.visitors), Number(n.dataset.rate),
    n.querySelector("[data-currencies]").dataset.currencies]));
  const channels = await rows(page, "channels", "count");
  await page.screenshot({ path: `${shots}/goals.png` });
  await page.click("[data-controls] details.filters summary");
  await page.selectOption("[data-controls] select[name=goal]", "Pro signup");
  await Promise.all([page.waitForNavigation(), page.click("[data-controls] > button")]);
  const filtered = { url: page.url(), chips: await texts(page, "[data-filter]", "data-filter"),
                     visitors: Number(await page.getAttribute("[data-metric=visitors]", "data-value")),
                     channels: await rows(page, "channels", "count") };
  await open(page, `/p/${shop}/funnels${state}&step=%2F&step=${encodeURIComponent("goal:Pro signup")}`);
  const funnel = await page.$$eval("[data-step]", (nodes) => nodes.map((n) => [Number(n.dataset.step), Number(n.dataset.visitors)]));
  const revenueStatus = await open(page, `/p/${shop}/revenue${state}&interval=day`);
  await page.waitForSelector("[data-chart=trend][data-drawn=true] canvas", { state: "attached" });
  const revenue = {
    status: revenueStatus,
    drawn: Number(await page.$eval("[data-chart=trend]", (b) => b.dataset.lines)),
    over_time: await page.$$eval("[data-block=revenue] tr[data-period]", (nodes) => nodes.map((n) => [
      n.dataset.period, n.dataset.currency, Number(n.dataset.revenue)])),
    channels: await rows(page, "channels", "currency", "revenue"),
    products: await rows(page, "products", "currency", "revenue"),
  };
  await page.screenshot({ path: `${shots}/revenue.png` });
  return { status, goals, channels, filtered, funnel, revenue };
}

async function discover(page) {
  const project = env.DISCOVER_PROJECT;
  const query = `${env.DISCOVER_STATE}&target=${encodeURIComponent(env.DISCOVER_TARGET)}` +
    `&path=${encodeURIComponent(env.DISCOVER_PATH)}`;
  const status = await open(page, `/p/${project}/discover${query}`);
  await page.waitForSelector("[data-chart=paths][data-drawn=true] svg", { state: "attached" });
  const funnels = await page.$$eval("[data-funnel]", (nodes) =>
    nodes.map((n) => ({ steps: n.dataset.funnel, reached: n.dataset.reached.split(",").map(Number) })));
  const drivers = await page.$$eval("[data-driver]", (nodes) => nodes.map((n) => ({
    driver: n.dataset.driver, significant: n.dataset.significant === "yes", lift: n.dataset.lift })));
  const diagram = await page.$eval("[data-chart=paths]", (box) => ({
    nodes: Number(box.dataset.nodes), links: Number(box.dataset.links),
    rects: box.querySelectorAll("svg rect.sankey-node").length, paths: box.querySelectorAll("svg path.sankey-link").length,
    labels: [...box.querySelectorAll("svg text")].map((t) => t.textContent),
    width: box.querySelector("svg").getBoundingClientRect().width,
  }));
  await page.screenshot({ path: `${shots}/discover.png`, fullPage: true });
  // a candidate's link opens it on the Funnels page
  await Promise.all([page.waitForNavigation(), page.click("[data-funnel] a")]);
  const opened = { url: page.url(), steps: await page.$$eval("[data-step]", (nodes) => nodes.length) };
  return { status, funnels, drivers, diagram, opened };
}

async function failed(page) {
  const status = await open(page, `/p/${project}/failed`);  // failures are dated when they failed: now
  const reasons = await page.$$eval("[data-reason]", (nodes) =>
    nodes.map((n) => [n.dataset.reason, Number(n.dataset.count)]));
  const samples = await texts(page, "[data-sample]", "data-sample");
  await page.screenshot({ path: `${shots}/failed-events.png` });
  return { status, reasons, samples };
}

async function live(page) {
  const status = await open(page, `/p/${project}/live`);
  await page.screenshot({ path: `${shots}/live.png` });
  const before = await page.$$eval("[data-live-rows] tr", (rows) => rows.length);
  const sent = await fetch(`${env.COLLECTOR}/v1/track`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Basic " + btoa(`${env.WRITE_KEY}:`) },
    body: JSON.stringify({ event: "Live Check", anonymousId: "live-visitor", messageId: env.LIVE_ID }),
  });
  const started = Date.now();
  // no reload: the page must fetch it by itself
  await page.waitForSelector(`[data-live-rows] tr[data-message-id="${env.LIVE_ID}"]`, { timeout: 90000 });
  return { status, sent: sent.status, before, appeared_after_ms: Date.now() - started,
           refreshes: Number(await page.getAttribute("[data-live]", "data-refreshes")) };
}

async function sql(page) {
  await open(page, `/p/${project}/overview${state}`);
  await page.click("[data-block=pages] a.sql");
  await page.waitForSelector("[data-sql]");
  return { text: await page.textContent("[data-sql]") };
}

async function flow(page) {
  const status = await open(page, `/p/${project}/flow${state}`);
  const steps = await page.$$eval("[data-step]", (nodes) => nodes.map((n) => ({
    name: n.dataset.step, when: n.querySelector("[data-when]").textContent.trim(),
    lag: n.dataset.lag === undefined ? null : Number(n.dataset.lag),
    ...Object.fromEntries(["eventsIn", "eventsOut", "dropped", "deadLettered", "stored"].map((field) => [
      field, n.dataset[`${field}PerMin`] === undefined ? null : Number(n.dataset[`${field}PerMin`]) * 60])) })));
  const catalogue = await page.$$eval("[data-catalogue-event]", (nodes) => nodes.map((n) => ({
    event: n.dataset.catalogueEvent, type: n.dataset.type, count: Number(n.dataset.count), schemas: n.dataset.schemas,
    properties: [...n.querySelectorAll("[data-property]")].map((p) => p.dataset.property) })));
  await page.screenshot({ path: `${shots}/flow.png`, fullPage: true });
  const save = async (document) => {
    await page.fill("[data-flow-document]", JSON.stringify(document));
    await Promise.all([page.waitForNavigation(), page.click("[data-save-flow]")]);
  };
  await save(["validate", { step: "index", when: { type: "click" } }]);  // refused, every problem named
  const refused = (await page.textContent("[data-flow-problems]")).trim();
  const kept = await page.inputValue("[data-flow-document]");
  await save(JSON.parse(env.NEW_FLOW));
  return { status, steps, catalogue, refused, kept_draft: kept.includes('"click"'),
           saved: await texts(page, "[data-step]", "data-step"),
           saved_when: await page.$$eval("[data-step] [data-when]", (n) => n.map((x) => x.textContent.trim())),
           after_save: new URL(page.url()).pathname };
}

async function alerts(page) {
  const path = `/p/${env.ALERTS_PROJECT}/alerts`;
  const status = await open(page, path);
  const rules = await page.$$eval("[data-rule]", (rows) => rows.map((r) => ({
    rule: r.dataset.rule, kind: r.dataset.kind, alerts: Number(r.dataset.alerts) })));
  const recent = await texts(page, "[data-alert]", "data-alert-rule");
  const channels = await texts(page, "[data-channel]", "data-channel");
  await page.screenshot({ path: `${shots}/alerts.png`, fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click("[data-test-alert=signup]")]);
  const tested = (await page.textContent("[data-alert-done]")).trim();
  await page.fill("[data-alerts-document]", JSON.stringify({ rules: [{ name: "x", kind: "hunch" }] }));
  await Promise.all([page.waitForNavigation(), page.click("[data-save-alerts]")]);
  const refused = (await page.textContent("[data-alert-problems]")).trim();
  return { status, rules, recent, channels, tested, refused };
}

async function tags(page) {
  const path = `/p/${env.ALERTS_PROJECT}/tags`;
  const out = { status: await open(page, path) };
  const submit = (selector) => Promise.all([page.waitForNavigation(), page.click(selector)]);
  await page.fill("[data-new-container] input[name=container]", "web");
  await page.fill("[data-new-container] input[name=name]", "Website");
  await submit("[data-create-container]");
  out.created = await texts(page, "[data-container]", "data-container");
  out.serves_at_first = (await page.textContent("[data-serves]")).trim();
  const pixel = (tag) => ({ triggers: { all: { kind: "pageview" } },
                            tags: { [tag]: { kind: "pixel", triggers: ["all"], url: `https://pixel.test/${tag}` } } });
  await page.fill("[data-tags-document]", JSON.stringify(pixel("first")));
  await submit("[data-save-draft]");
  out.saved = (await page.textContent("[data-tags-done]")).trim();
  await page.fill("input[name=note]", "the first pixel");
  await submit("[data-publish]");
  out.published = (await page.textContent("[data-tags-done]")).trim();
  const custom = pixel("second");
  custom.tags.chat = { kind: "html", triggers: ["all"], code: "<script>window.chat = 1</script>" };
  await page.fill("[data-tags-document]", JSON.stringify(custom));
  await submit("[data-save-draft]");
  out.custom_code = (await page.textContent("[data-custom-code]")).trim();
  await submit("[data-publish]");
  await submit("[data-rollback='1']");
  out.rolled_back = (await page.textContent("[data-tags-done]")).trim();
  out.serves = (await page.textContent("[data-serves]")).trim();
  out.versions = await texts(page, "[data-version]", "data-version");
  await submit("[data-preview]");
  out.preview = (await page.textContent("[data-tags-done]")).trim();
  await page.fill("[data-tags-document]", JSON.stringify({ tags: { x: { kind: "hunch" } } }));
  await submit("[data-save-draft]");
  out.refused = (await page.textContent("[data-tags-problems]")).trim();
  out.kept_draft = (await page.inputValue("[data-tags-document]")).includes("hunch");
  await page.screenshot({ path: `${shots}/tags.png`, fullPage: true });
  return out;
}

async function phone(browser, cookie) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2,
                                             isMobile: true, hasTouch: true });
  await context.addCookies([cookie]);
  const page = await context.newPage();
  const widths = {};
  for (const view of ["overview", "funnels", "retention", "live", "sessions", "failed"]) {
    await open(page, `/p/${project}/${view}${state}`);
    widths[view] = await page.evaluate(() => document.documentElement.scrollWidth);
  }
  await open(page, `/p/${project}/overview${state}`);
  await page.screenshot({ path: `${shots}/overview-phone.png` });
  await context.close();
  return { viewport: 390, widths };
}

async function access(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const out = {};
  await open(page, `/p/${project}/overview`);
  out.anonymous_lands_on = new URL(page.url()).pathname;
  await page.fill("input[name=token]", "not-a-token");
  await page.click("form[action='/login'] button");
  out.wrong_token_error = (await page.textContent("[data-error]")).trim();
  await page.fill("input[name=token]", env.READ_TOKEN);
  await page.click("form[action='/login'] button");
  await page.waitForSelector("[data-metric=visitors]");
  out.read_token_lands_on = new URL(page.url()).pathname;
  out.read_token_nav = await page.$$eval("nav.tabs a", (links) => links.map((a) => a.textContent.trim()));
  out.read_token_failed_status = await open(page, `/p/${project}/failed`);
  out.read_token_other_project_status = await open(page, `/p/${env.EMPTY_PROJECT}/overview`);
  await context.close();
  return out;
}

async function empty(page) {
  const out = {};
  for (const view of ["overview", "funnels", "retention", "live", "sessions", "failed"]) {
    const status = await open(page, `/p/${env.EMPTY_PROJECT}/${view}`);
    out[view] = { status, empty: await page.$$eval("[data-empty]", (n) => n.length) };
  }
  await open(page, `/p/${env.EMPTY_PROJECT}/overview`);
  await page.screenshot({ path: `${shots}/overview-empty.png` });
  out.bad_range = { status: await open(page, `/p/${project}/overview?range=custom&from=2026-05-02&to=2026-05-01`),
                    message: await page.textContent("[data-problem] p") };
  return out;
}

// Logs in through the login form, as a person does; returns the session cookies it set.
async function logIn(context, token) {
  const page = await context.newPage();
  await page.goto(base + "/login", { waitUntil: "networkidle" });
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForNavigation(), page.click("form[action='/login'] button")]);
  await page.close();
  return context.cookies();
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const cookie = (await logIn(context, env.ADMIN_TOKEN)).find((c) => c.name === "hw_dashboard");
  report.session_cookie_holds_token = cookie.value.includes(env.ADMIN_TOKEN);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  for (const [name, run] of Object.entries({ overview, trends, shop, funnels, retention, discover, sessions, people, failed, sql, live, flow, alerts, tags })) {
    report.pages[name] = await run(page);
  }
  report.empty = await empty(page);
  report.errors = errors;
  report.phone = await phone(browser, cookie);
  report.access = await access(browser);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
