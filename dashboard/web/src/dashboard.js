// The dashboard's behaviour: the trend chart (uPlot), the paths diagram (d3-sankey), the live page's
// refresh, auto-submitting selects, and copying SQL. The pages work without it; it only draws and
// refreshes.
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

function trendChart(box) {
  const data = JSON.parse(box.querySelector("script").textContent);
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
  document.querySelectorAll("[data-chart=trend]").forEach(trendChart);
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
