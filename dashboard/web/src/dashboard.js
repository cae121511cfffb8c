// The dashboard's behaviour: the trend charts (uPlot) and their tables, drawn from the Stats API's
// answers; the paths diagram (d3-sankey), the live page's refresh, auto-submitting selects, and copying
// SQL. The pages' other blocks work without it.
import uPlot from "uplot";
import { sankey, sankeyLinkHorizontal } from "d3-sankey";

const LIVE_EVERY_MS = 5000;

const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

// Events and visitors on two axes; or, broken down by cohorts, each cohort's visitors on one.
function trendLines(data) {
  const points = { show: data.x.length < 60 };
  if (data.cohorts) {
    return {
      series: [{}, ...data.cohorts.map((c, i) => ({ label: c.name, stroke: PALETTE[i % PALETTE.length], width: 2, points }))],
      axes: [{}, { size: 60 }],
      values: data.cohorts.map((c) => c.visitors),
    };
  }
  return {
    series: [{}, { label: "Events", stroke: PALETTE[0], width: 2, points },
             { label: "Visitors", stroke: PALETTE[1], width: 2, scale: "visitors", points }],
    axes: [{}, { size: 60, stroke: PALETTE[0] }, { scale: "visitors", side: 1, size: 60, stroke: PALETTE[1], grid: { show: false } }],
    values: [data.events, data.visitors],
  };
}

function trendChart(box, data) {
  const lines = trendLines(data);
  const options = (width) => ({
    width, height: 260,
    // the x axis spans the view's range, however few periods have events (around a single point
    // uPlot's automatic range stretches the axis over years)
    scales: { x: { time: true, range: () => [data.from, data.to] } },
    series: lines.series,
    axes: lines.axes,
  });
  const drawn = (u) => {
    box.dataset.xRange = JSON.stringify([u.scales.x.min, u.scales.x.max]);
    box.dataset.lines = String(u.series.length - 1);
    box.dataset.drawn = "true";
  };
  let plot = new uPlot({ ...options(box.clientWidth), hooks: { draw: [drawn] } }, [data.x, ...lines.values], box);
  let pending;
  new ResizeObserver(() => {
    clearTimeout(pending);
    pending = setTimeout(() => plot.setSize({ width: box.clientWidth, height: 260 }), 100);
  }).observe(box);
}

const MAX_RETRIES = 3;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The Stats API's answer for a chart (data-source), waiting as Retry-After says when the token is over
// its rate limit; an error's message is thrown.
async function answer(source) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (response.ok) return body;
    if (response.status !== 429 || attempt === MAX_RETRIES) throw new Error(body.message || `HTTP ${response.status}`);
    await sleep(1000 * Math.max(1, Number(response.headers.get("Retry-After")) || 1));
  }
}

function periodLabel(seconds, interval, timeZone) {
  if (interval !== "hour") return new Date(seconds * 1000).toISOString().slice(0, 10);
  const hour = new Intl.DateTimeFormat("sv-SE", { timeZone, year: "numeric", month: "2-digit", day: "2-digit",
                                                  hour: "2-digit", hourCycle: "h23" }).format(new Date(seconds * 1000));
  return `${hour}:00`;
}

const figure = (value) => (Number.isInteger(value) ? value.toLocaleString("en")
  : Number(value).toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

function row(attributes, cells) {
  const tr = document.createElement("tr");
  Object.assign(tr.dataset, attributes);
  cells.forEach(([text, numeric, data]) => {
    const td = cell(text);
    if (numeric) td.className = "num";
    Object.assign(td.dataset, data || {});
    tr.append(td);
  });
  return tr;
}

function head(names) {
  const thead = document.createElement("thead");
  const tr = document.createElement("tr");
  names.forEach((name) => { const th = document.createElement("th"); th.textContent = name; tr.append(th); });
  thead.append(tr);
  return thead;
}

// The table beside a chart: each period's value of each line (Trends), or the revenue block's rows.
const TABLES = {
  lines(table, body, box) {
    const lines = body.chart.cohorts;
    const rows = body.chart.x.map((t, i) => row({ period: String(t) }, [
      [periodLabel(t, box.dataset.interval, box.dataset.tz)],
      ...lines.map((line) => [figure(line.visitors[i]), true, { line: line.name, value: String(line.visitors[i]) }]),
    ]));
    const tbody = document.createElement("tbody");
    tbody.append(...rows);
    table.replaceChildren(head(["Period", ...lines.map((line) => line.name)]), tbody);
  },
  over_time(table, body) {
    const tbody = document.createElement("tbody");
    tbody.append(...body.blocks.over_time.map((r) => row(
      { period: r.period, currency: r.currency, revenue: String(r.revenue) },
      [[r.period], [r.currency || "(no currency)"], [figure(r.revenue), true], [figure(r.orders), true],
       [figure(r.payers), true], [figure(r.per_payer), true]])));
    table.replaceChildren(head(["Period", "Currency", "Revenue", "Orders", "Payers", "Per payer"]), tbody);
  },
};

async function fetchedChart(box) {
  const status = box.querySelector("[data-chart-status]");
  let body;
  try {
    body = await answer(box.dataset.source);
  } catch (error) {
    status.textContent = `Could not load the chart: ${error.message}`;
    status.className = "error";
    box.dataset.failed = "true";
    return;
  }
  status.remove();
  const table = box.parentElement.querySelector("[data-chart-table]");
  const lines = body.chart.cohorts ? body.chart.cohorts.length : 2;
  if (!body.chart.x.length || !lines) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.dataset.empty = "";
    empty.textContent = box.dataset.emptyText;
    box.replaceWith(empty);
    table?.remove();
    return;
  }
  box.dataset.range = JSON.stringify([body.chart.from, body.chart.to]);
  if (table) TABLES[table.dataset.chartTable](table, body, box);
  trendChart(box, body.chart);
}

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  Object.entries(attributes).forEach(([key, value]) => element.setAttribute(key, value));
  parent.append(element);
  return element;
}

// The paths from or to a step: one column per distance from it (a node's offset), links as wide as
// their sessions. Each node and link says its sessions in a tooltip.
function pathsDiagram(box) {
  const graph = JSON.parse(box.querySelector("script").textContent);
  const first = Math.min(...graph.nodes.map((n) => n.offset));
  const width = Math.max(box.clientWidth, 480);
  const height = Math.max(240, 28 * Math.max(...Object.values(graph.nodes.reduce((count, n) => {
    count[n.offset] = (count[n.offset] || 0) + 1;
    return count;
  }, {}))));
  const layout = sankey().nodeId((n) => n.id).nodeWidth(12).nodePadding(12)
    .nodeAlign((n) => n.offset - first).extent([[1, 1], [width - 1, height - 1]]);
  const { nodes, links } = layout({
    nodes: graph.nodes.map((n) => ({ ...n })),
    links: graph.links.map((l) => ({ source: l.source, target: l.target, value: l.sessions })),
  });
  const svg = svgElement("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" }, box);
  const link = sankeyLinkHorizontal();
  links.forEach((l, i) => {
    const path = svgElement("path", { d: link(l), class: "sankey-link", "stroke-width": Math.max(1, l.width),
                                      stroke: PALETTE[i % PALETTE.length] }, svg);
    svgElement("title", {}, path).textContent = `${l.source.step} → ${l.target.step}: ${l.value.toLocaleString("en")}`;
  });
  nodes.forEach((n) => {
    const rect = svgElement("rect", { x: n.x0, y: n.y0, width: n.x1 - n.x0, height: Math.max(1, n.y1 - n.y0),
                                      class: "sankey-node", "data-node": n.id }, svg);
    svgElement("title", {}, rect).textContent = `${n.step}: ${n.sessions.toLocaleString("en")} sessions`;
    const right = n.x0 < width / 2;
    const label = svgElement("text", { x: right ? n.x1 + 4 : n.x0 - 4, y: (n.y0 + n.y1) / 2, dy: "0.35em",
                                       "text-anchor": right ? "start" : "end", class: "sankey-label" }, svg);
    label.textContent = n.step;
  });
  box.dataset.nodes = String(nodes.length);
  box.dataset.links = String(links.length);
  box.dataset.drawn = "true";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function liveRefresh(panel) {
  const rows = panel.querySelector("[data-live-rows]");
  const refresh = async () => {
    try {
      const response = await fetch(panel.dataset.live, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      rows.replaceChildren(...data.latest.map((e) => {
        const tr = document.createElement("tr");
        tr.dataset.messageId = e.message_id;
        tr.append(cell(e.timestamp.replace("T", " ").slice(0, 19)), cell(e.event), cell(e.url_path),
                  cell(e.visitor), cell(e.country), cell(e.device));
        return tr;
      }));
      panel.querySelector("[data-live-events]").textContent = data.events.toLocaleString("en");
      panel.querySelector("[data-live-visitors]").textContent = data.visitors.toLocaleString("en");
      panel.querySelector("[data-metric=live_events]").dataset.value = data.events;
      panel.querySelector("[data-metric=live_visitors]").dataset.value = data.visitors;
      panel.querySelector("[data-live-empty]").hidden = data.latest.length > 0;
      panel.querySelector("[data-updated]").textContent = `updated ${new Date().toLocaleTimeString()}`;
      panel.dataset.refreshes = String(Number(panel.dataset.refreshes || 0) + 1);
    } catch (error) {
      panel.querySelector("[data-updated]").textContent = `could not update (${error.message}); retrying`;
    }
  };
  setInterval(refresh, LIVE_EVERY_MS);
}

function start() {
  document.querySelectorAll("[data-chart=trend][data-source]").forEach(fetchedChart);
  document.querySelectorAll("[data-chart=paths]").forEach(pathsDiagram);
  document.querySelectorAll("[data-live]").forEach(liveRefresh);
  document.querySelectorAll("[data-autosubmit]").forEach((select) =>
    select.addEventListener("change", () => select.form.requestSubmit()));
  const controls = document.querySelector("[data-controls]");
  if (controls) {
    const range = controls.querySelector("[name=range]");
    const showCustom = () => controls.classList.toggle("is-custom", range.value === "custom");
    range.addEventListener("change", showCustom);
    showCustom();
  }
  document.querySelectorAll("[data-copy]").forEach((button) => button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(document.querySelector("[data-sql]").textContent);
    button.textContent = "Copied";
  }));
}

document.addEventListener("DOMContentLoaded", start);
