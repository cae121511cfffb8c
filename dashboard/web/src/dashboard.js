// The dashboard's behaviour: the trend chart (uPlot), the live page's refresh, auto-submitting
// selects, and copying SQL. The pages work without it; it only draws and refreshes.
import uPlot from "uplot";

const LIVE_EVERY_MS = 5000;

function trendChart(box) {
  const data = JSON.parse(box.querySelector("script").textContent);
  const options = (width) => ({
    width, height: 260,
    // the x axis spans the view's range, however few periods have events (around a single point
    // uPlot's automatic range stretches the axis over years)
    scales: { x: { time: true, range: () => [data.from, data.to] } },
    series: [{}, { label: "Events", stroke: "#2563eb", width: 2, points: { show: data.x.length < 60 } },
             { label: "Visitors", stroke: "#16a34a", width: 2, scale: "visitors", points: { show: data.x.length < 60 } }],
    axes: [{}, { size: 60, stroke: "#2563eb" }, { scale: "visitors", side: 1, size: 60, stroke: "#16a34a", grid: { show: false } }],
  });
  const drawn = (u) => {
    box.dataset.xRange = JSON.stringify([u.scales.x.min, u.scales.x.max]);
    box.dataset.drawn = "true";
  };
  let plot = new uPlot({ ...options(box.clientWidth), hooks: { draw: [drawn] } },
                       [data.x, data.events, data.visitors], box);
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
