// A queue's history (#queue/<name>): its depth (pending, processing, delayed), its rates (jobs
// completed and arrived per second, from the counters' growth between samples) and the age of
// its oldest pending job, over 10 minutes, an hour or a day - the samples /stats/history keeps
// in Redis, so every gateway replica shows the same and a restart loses none. Uses the chart
// helpers of detail.js.
"use strict";

const queueView = { name: null, asked: 0, plots: [] };

function openQueue(name) {
  queueView.name = name;
  $("#queue-title").textContent = name;
  loadQueue();
}

function closeQueue() {
  queueView.asked += 1; // a load still under way is for a page no longer shown
  for (const plot of queueView.plots) plot.destroy();
  queueView.plots = [];
  queueView.name = null;
  $("#queue-charts").replaceChildren();
  $("#queue-note").textContent = "";
}

function queueChart(key, title, times, columns) {
  const figure = el("figure", { class: "chart", "data-series": key }, el("figcaption", {}, title, el("span", {}, "")));
  $("#queue-charts").append(figure);
  const palette = [COLORS.line, "#d29922", "#a371f7"];
  const series = [{}, ...columns.map(([label], i) => ({ label, stroke: palette[i], width: 1.5 }))];
  const data = [times, ...columns.map(([, values]) => values)];
  queueView.plots.push(new uPlot({ width: chartWidth(figure), height: 190, series, axes: axes(), legend: { live: true } }, data, figure));
  const values = columns.flatMap(([, v]) => v).filter((v) => v !== null);
  figure.dataset.points = String(times.length);
  figure.dataset.max = String(values.length ? Math.max(...values) : 0);
  figure.querySelector("figcaption span").textContent = values.length ? `peak ${showValue(Math.max(...values))}` : "";
}

// Per-second growth of a counter between samples; null where it shrank (Redis was emptied).
function perSecond(samples, field) {
  return samples.map((s, i) => {
    if (i === 0) return null;
    const grown = s[field] - samples[i - 1][field];
    const span = s.at - samples[i - 1].at;
    return grown >= 0 && span > 0 ? grown / span : null;
  });
}

async function loadQueue() {
  const name = queueView.name;
  if (name === null) return;
  const asked = ++queueView.asked;
  let answer;
  try {
    answer = await getJSON(`/stats/history?minutes=${$("#queue-window").value}`);
  } catch (err) {
    if (asked === queueView.asked) $("#queue-note").textContent = `history: ${err.message}`;
    return;
  }
  if (asked !== queueView.asked) return;
  for (const plot of queueView.plots) plot.destroy();
  queueView.plots = [];
  $("#queue-charts").replaceChildren();
  const samples = Object.hasOwn(answer.queues, name) ? answer.queues[name] : [];
  const span = $("#queue-window").selectedOptions[0].textContent;
  $("#queue-note").textContent = samples.length
    ? `${samples.length} samples over the last ${span}, one every ${answer.interval_s} s`
    : `no samples of ${name} in the last ${span}: is it a queue in use?`;
  if (!samples.length) return;
  const times = samples.map((s) => s.at);
  queueChart("depth", "depth", times, [
    ["pending", samples.map((s) => s.pending)],
    ["processing", samples.map((s) => s.processing)],
    ["delayed", samples.map((s) => s.delayed)],
  ]);
  queueChart("rate", "jobs per second", times, [
    ["completed", perSecond(samples, "completed")],
    ["arrived", perSecond(samples, "enqueued")],
  ]);
  queueChart("age", "oldest pending, seconds", times, [["oldest pending", samples.map((s) => s.oldest_pending_age_s)]]);
}

$("#queue-window").addEventListener("change", loadQueue);
// As often as the samples change: every few seconds within 10 minutes, every minute beyond.
setInterval(() => { if (queueView.name && Number($("#queue-window").value) <= 10) loadQueue(); }, 5000);
setInterval(() => { if (queueView.name && Number($("#queue-window").value) > 10) loadQueue(); }, 60000);
