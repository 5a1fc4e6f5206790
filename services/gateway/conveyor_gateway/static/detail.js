// Machine detail (#machine/<id>): a trend chart per numeric signal from InfluxDB, downsampled
// by the gateway to the chart's width, with the stream's live values appended; the SPC control
// charts with the limits in force at each point and the points the worker judged out of
// control; the configuration and its changes; the machine's alerts. Charts by uPlot (vendored,
// static); everything else as text, as in dashboard.js, whose helpers ($, el, getJSON, fmt)
// this uses.
"use strict";

const COLORS = { line: "#58a6ff", band: "rgba(88, 166, 255, .35)", limit: "#f85149",
  centre: "#7d8b99", out: "#f85149", axis: "#7d8b99", grid: "#263241" };
const detail = { machine: null, asked: 0, trends: new Map() };
const SHOWN_VIOLATIONS = 5; // the newest out-of-control points listed under a chart
const MAX_TRENDS = 50; // charts on one page, as the gateway's MAX_TREND_SIGNALS

// Opens the machine's page (views.js calls this when the URL names it).
function openMachine(machine) {
  detail.machine = machine;
  $("#detail-title").textContent = machine;
  loadDetail();
}

function closeMachine() {
  detail.asked += 1; // a load still under way is for a page no longer shown
  for (const t of detail.trends.values()) t.plot.destroy();
  detail.trends.clear();
  detail.machine = null;
  for (const id of ["#trends", "#spc-charts", "#detail-changes", "#detail-alerts"]) $(id).replaceChildren();
  $("#detail-config").textContent = "";
  $("#detail-note").textContent = "";
  delete document.body.dataset.detailMs;
}

// The width of a chart in a figure already placed in its grid (its padding taken off).
function chartWidth(figure) {
  return Math.max(280, (figure.clientWidth || 460) - 14);
}

function axes() {
  const axis = { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid } };
  return [axis, { ...axis, size: 60 }];
}

const seconds = (times) => times.map((t) => t / 1000);

// --- trends -----------------------------------------------------------------------------------
// A trend's figure, appended to the trends' grid, with its (empty) chart.
function trendFigure(signal, unit) {
  const title = unit ? `${signal} (${unit})` : signal;
  const figure = el("figure", { class: "chart", "data-signal": signal }, el("figcaption", {}, title, el("span", {}, "")));
  $("#trends").append(figure);
  const plot = new uPlot(
    {
      width: chartWidth(figure),
      height: 170,
      series: [
        {},
        { label: "mean", stroke: COLORS.line, width: 1.5 },
        { label: "min", stroke: COLORS.band, width: 1 },
        { label: "max", stroke: COLORS.band, width: 1 },
      ],
      axes: axes(),
      legend: { live: true },
    },
    [[], [], [], []],
    figure,
  );
  return { figure, plot, unit, data: [[], [], [], []] };
}

function drawTrend(trend) {
  trend.plot.setData(trend.data);
  const means = trend.data[1];
  const figure = trend.figure;
  figure.dataset.points = String(means.length);
  if (means.length) {
    figure.dataset.min = String(Math.min(...trend.data[2]));
    figure.dataset.max = String(Math.max(...trend.data[3]));
    figure.querySelector("figcaption span").textContent = `last ${withUnit(means[means.length - 1], trend.unit)}`;
  }
}

function renderTrends(answer) {
  for (const t of detail.trends.values()) t.plot.destroy();
  detail.trends.clear();
  $("#trends").replaceChildren();
  for (const s of answer.series) {
    const trend = trendFigure(s.signal, s.unit);
    trend.data = [seconds(s.times), s.mean, s.min, s.max];
    detail.trends.set(s.signal, trend);
    drawTrend(trend);
  }
  if (!answer.series.length) $("#trends").append(el("p", { class: "empty" }, "no numeric values of this machine in InfluxDB in this window"));
  if (answer.truncated) $("#detail-note").textContent = "more signals than one page of trends shows: the first ones by name";
}

// A live value of the open machine: appended to its signal's trend, the window kept.
function detailEvent(event) {
  if (event.kind !== "realtime" || event.machine !== detail.machine || $("#detail-view").hidden) return;
  const at = (event.ts || Date.now()) / 1000;
  const span = Number($("#detail-window").value) / 1000;
  for (const [signal, value] of Object.entries(event.values || {})) {
    if (typeof value !== "number") continue;
    let trend = detail.trends.get(signal);
    if (!trend && detail.trends.size >= MAX_TRENDS) continue; // as many as one answer holds
    if (!trend) {
      const empty = $("#trends .empty");
      if (empty) empty.remove();
      const known = (machines.get(detail.machine) || {}).units || {}; // a Sparkplug B birth's
      trend = trendFigure(signal, (event.units || {})[signal] || known[signal]);
      detail.trends.set(signal, trend);
    }
    const [times] = trend.data;
    if (times.length && at < times[times.length - 1]) continue; // older than what is drawn
    trend.data.forEach((column, i) => column.push(i === 0 ? at : value));
    while (trend.data[0].length && trend.data[0][0] < at - span) trend.data.forEach((column) => column.shift());
    drawTrend(trend);
  }
}

// --- SPC --------------------------------------------------------------------------------------
// A control chart's figure, appended to the SPC grid: the values, the centre line and the
// limits in force at each point, and (``marked``) the points out of control.
function controlChart(title, times, value, centre, upper, lower, marked) {
  const figure = el("figure", { class: "chart" }, el("figcaption", {}, title, el("span", {}, "")));
  $("#spc-charts").append(figure);
  const dashed = { width: 1, dash: [6, 4] };
  const series = [
    {},
    { label: "value", stroke: COLORS.line, width: 1.5, points: { show: true, size: 4 } },
    { label: "CL", stroke: COLORS.centre, ...dashed },
    { label: "UCL", stroke: COLORS.limit, ...dashed },
    { label: "LCL", stroke: COLORS.limit, ...dashed },
  ];
  const data = [seconds(times), value, centre, upper, lower];
  if (marked) {
    series.push({ label: "out of control", stroke: COLORS.out, width: 0, paths: () => null,
      points: { show: true, size: 10, stroke: COLORS.out, fill: COLORS.out } });
    data.push(marked);
  }
  new uPlot({ width: chartWidth(figure), height: 190, series, axes: axes(), legend: { live: true } }, data, figure);
  return figure;
}

function renderSpc(chart) {
  const marked = chart.value.map((v, i) => (chart.rules[i].length ? v : null));
  const title = `${chart.characteristic} · ${chart.chart === "Xbar-R" ? "X̄ chart" : "individuals"}`;
  const figure = controlChart(title, chart.times, chart.value, chart.cl, chart.ucl, chart.lcl, marked);
  figure.dataset.characteristic = chart.characteristic;
  figure.dataset.chart = chart.chart;
  figure.querySelector("figcaption span").textContent =
    `${chart.value.length} points${chart.truncated ? " (the newest)" : ""}`;
  const out = chart.rules.map((rules, i) => [rules, i]).filter(([rules]) => rules.length);
  const shown = out.slice(-SHOWN_VIOLATIONS).reverse().map(([rules, i]) => el(
    "li", {},
    `rule ${rules.join(", ")} at ${new Date(chart.times[i]).toLocaleString()}: ${showValue(chart.value[i])}`,
  ));
  if (out.length > shown.length) shown.push(el("li", { class: "more" }, `and ${out.length - shown.length} earlier`));
  if (shown.length) figure.append(el("ul", { class: "violations", title: "Western Electric rules broken, as the worker judged, newest first" }, ...shown));
  if (chart.chart === "Xbar-R") {
    const range = controlChart(`${chart.characteristic} · R chart`, chart.times, chart.range, chart.r_cl, chart.r_ucl, chart.r_lcl, null);
    range.dataset.characteristic = chart.characteristic;
    range.dataset.chart = "R";
  }
}

async function loadSpc(machine, characteristics, from, to, asked) {
  const answers = await Promise.allSettled(characteristics.map((c) =>
    getJSON(`/spc/${encodeURIComponent(machine)}/${encodeURIComponent(c)}?from=${from}&to=${to}`)));
  if (asked !== detail.asked) return;
  $("#spc-charts").replaceChildren();
  answers.forEach((a, i) => {
    if (a.status === "fulfilled") renderSpc(a.value);
    else $("#spc-charts").append(el("p", { class: "note" }, `${characteristics[i]}: ${a.reason.message}`));
  });
  if (!answers.length) $("#spc-charts").append(el("p", { class: "empty" }, "no SPC samples of this machine in this window"));
}

// --- configuration and alerts -----------------------------------------------------------------
function renderConfig(state, changes) {
  $("#detail-config").textContent = state && state.config
    ? JSON.stringify(state.config.config, null, 2)
    : "no configuration received (<machine>/tech)";
  const items = (changes ? changes.changes : []).map((c, i, all) => {
    const older = all[i + 1];
    const changed = older && typeof c.config === "object" && typeof older.config === "object"
      ? Object.keys({ ...c.config, ...older.config }).filter((k) => JSON.stringify(c.config[k]) !== JSON.stringify(older.config[k]))
      : [];
    return el("li", {}, `v${c.version} · ${new Date(c.time_ms).toLocaleString()}${changed.length ? " · changed " + changed.join(", ") : ""}`);
  });
  $("#detail-changes").replaceChildren(...items);
}

function renderMachineAlerts(machine, alerts) {
  const mine = alerts.filter((a) => a.machine === machine).slice(0, 30);
  const items = mine.map((a) => el(
    "li", { class: String(a.severity || "").toLowerCase() },
    el("strong", {}, a.type), " ", a.message || "",
    el("small", {}, new Date(a.ts || a.received_at || 0).toLocaleString()),
  ));
  $("#detail-alerts").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "none among the latest alerts")]));
}

// --- loading ----------------------------------------------------------------------------------
async function loadDetail() {
  const machine = detail.machine;
  if (machine === null) return;
  const asked = ++detail.asked;
  const started = performance.now();
  const to = Date.now();
  const from = to - Number($("#detail-window").value);
  // A bucket per pixel of the charts' width (three in a row at most).
  const points = Math.min(2000, Math.max(10, Math.round(($("#trends").clientWidth || 900) / 2)));
  const base = `/machines/${encodeURIComponent(machine)}`;
  $("#detail-note").textContent = "loading…";
  const [trend, state, changes, alerts] = await Promise.allSettled([
    getJSON(`${base}/series?from=${from}&to=${to}&points=${points}`),
    getJSON(base),
    getJSON(`${base}/changes?limit=20`),
    getJSON("/alerts?limit=500"),
  ]);
  if (asked !== detail.asked) return; // another machine or window was asked for since
  $("#detail-note").textContent = "";
  if (trend.status === "fulfilled") {
    renderTrends(trend.value);
    await loadSpc(machine, trend.value.characteristics, from, to, asked);
  } else {
    // InfluxDB not configured or away: the gateway says why; the rest still shows.
    $("#detail-note").textContent = `trends and control charts: ${trend.reason.message}`;
    $("#trends").replaceChildren();
    $("#spc-charts").replaceChildren();
  }
  if (asked !== detail.asked) return;
  renderConfig(state.status === "fulfilled" ? state.value : null, changes.status === "fulfilled" ? changes.value : null);
  renderMachineAlerts(machine, alerts.status === "fulfilled" ? alerts.value.alerts : []);
  document.body.dataset.detailMs = String(Math.round(performance.now() - started)); // for the tests
}

$("#detail-window").addEventListener("change", loadDetail);
// Windows of a day or more gain a bucket a minute or more: reloaded every minute; shorter ones
// grow from the stream.
setInterval(() => { if (detail.machine && Number($("#detail-window").value) >= 86400000) loadDetail(); }, 60000);
