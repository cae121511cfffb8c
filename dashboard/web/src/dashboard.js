// The dashboard's behaviour: the trend chart (uPlot), the live page's refresh, auto-submitting
// selects, and copying SQL. The pages work without it; it only draws and refreshes.
import uPlot from "uplot";

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
