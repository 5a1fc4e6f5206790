// Conveyor dashboard: queues (polled from /stats), machines and alerts (live over /ws),
// dead letters with replay. Plain DOM, no build step; data is only ever set as text.
// The API token, when the gateway asks for it (a 401, or the stream closed with 4401), is kept
// in sessionStorage (this tab only) and sent as a Bearer header and as the stream's first
// message - never in a URL.
"use strict";

const $ = (sel) => document.querySelector(sel);
const fmt = new Intl.NumberFormat();
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};
const TOKEN_KEY = "conveyor-token";
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

function storeToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Asks for the token: the form under the header, with why.
function askForToken() {
  $("#login-note").textContent = token()
    ? "The gateway refused this token: paste the right one (GATEWAY_API_TOKEN)."
    : "This gateway asks for its API token (GATEWAY_API_TOKEN).";
  const form = $("#login");
  if (form.hidden) {
    form.hidden = false;
    $("#login-token").focus();
  }
}

async function getJSON(path, options = {}) {
  const headers = { ...authHeaders(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) askForToken();
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// --- queues ---------------------------------------------------------------------------------
let queueHistory = {}; // per queue, the samples of the window chosen (not window.history)

function sparkline(samples) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const depth = samples.map((s) => s.pending + s.processing + s.delayed);
  const max = Math.max(1, ...depth);
  const span = $("#history-window").selectedOptions[0].textContent;
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = samples.length
    ? `depth over the last ${span}, peak ${fmt.format(max)}`
    : `no depth sampled in the last ${span}`;
  svg.append(title);
  if (samples.length) svg.dataset.since = samples[0].at; // the history's start, for the tests
  if (samples.length < 2) return svg;
  const pts = depth.map((d, i) => [(i / (depth.length - 1)) * 100, 38 - (d / max) * 36]);
  const line = pts.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
  for (const [cls, d] of [["area", `${line}L100,40L0,40Z`], ["line", line]]) {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("class", cls);
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

function figure(label, value, bad = false) {
  return el("div", { class: bad ? "figure bad" : "figure" }, el("b", {}, value), el("i", {}, label));
}

function renderQueues(stats) {
  const cards = Object.entries(stats.queues).map(([name, q]) => {
    const card = el(
      "div",
      { class: "card", "data-queue": name },
      el("h3", {}, el("a", { href: `#queue/${encodeURIComponent(name)}`, title: "depth, rates and oldest age over time" }, name), el("span", {}, `${q.workers} worker${q.workers === 1 ? "" : "s"}`)),
      el(
        "div",
        { class: "figures" },
        figure("pending", fmt.format(q.pending)),
        figure("processing", fmt.format(q.processing)),
        figure("dead", fmt.format(q.failed), q.failed > 0),
        figure("jobs/s", q.rate_per_s.toFixed(q.rate_per_s < 10 ? 1 : 0)),
      ),
      sparkline(queueHistory[name] || []),
    );
    if (q.failed > 0) card.classList.add("dead");
    else if (q.oldest_pending_age_s > 30) card.classList.add("backlog");
    card.title = `oldest pending ${q.oldest_pending_age_s.toFixed(1)} s · delayed ${q.delayed} · completed ${fmt.format(q.completed)}`;
    return card;
  });
  $("#queues").replaceChildren(...(cards.length ? cards : [el("p", { class: "empty" }, "no queues yet")]));
  const w = $("#workers");
  w.textContent = `workers ${stats.workers}`;
  w.className = `pill ${stats.workers === "running" ? "ok" : "bad"}`;
  const select = $("#dead-queue");
  const names = Object.keys(stats.queues);
  if (select.options.length !== names.length) {
    const current = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(current)) select.value = current;
    loadDead();
  }
}

async function pollStats() {
  try {
    renderQueues(await getJSON("/stats"));
  } catch (err) {
    $("#workers").textContent = `stats: ${err.message}`;
    $("#workers").className = "pill bad";
  }
}

let historyAsked = 0;

let historyPolled = 0;

async function pollHistory() {
  const asked = ++historyAsked;
  historyPolled = Date.now();
  try {
    // Kept in Redis: the same after a gateway restart, and from any replica.
    const answer = await getJSON(`/stats/history?minutes=${$("#history-window").value}`);
    if (asked === historyAsked) queueHistory = answer.queues; // not an answer to an older window
  } catch (err) {
    /* the next poll retries; the cards keep their last sparkline */
  }
}

// --- machines and alerts ----------------------------------------------------------------------
const machines = new Map();
const STALE_AFTER_MS = 120000; // no value for two minutes: the card says since when

function stale(m) {
  return !m.offline && m.updated != null && Date.now() - m.updated > STALE_AFTER_MS;
}

function showValue(v) {
  if (typeof v === "number") return Number.isInteger(v) ? fmt.format(v) : v.toFixed(2);
  return String(v);
}

// The machine detail's deep link (detail.js shows it).
const machineLink = (id) => `#machine/${encodeURIComponent(id)}`;

// A value with its unit, when its messages named one: "21.50 °C".
const withUnit = (value, unit) => (unit ? `${showValue(value)} ${unit}` : showValue(value));

function renderMachine(id) {
  const m = machines.get(id);
  const units = m.units || {};
  const rows = Object.entries(m.values).slice(0, 8).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, withUnit(v, units[k]))]);
  if (m.config) rows.push(el("dt", {}, "config"), el("dd", {}, `v${m.config.version}`));
  const title = [el("h4", {}, el("a", { href: machineLink(id), title: "trends, SPC, configuration, alerts" }, id))];
  if (m.offline) title.push(el("p", { class: "offline-note" }, `offline since ${new Date(m.offline).toLocaleTimeString()}: last values`));
  m.stale = stale(m);
  if (m.stale) title.push(el("p", { class: "offline-note" }, `last seen ${new Date(m.updated).toLocaleString()}`));
  const state = m.offline ? " offline" : m.stale ? " stale" : "";
  const card = el("div", { class: `machine fresh${state}`, "data-machine": id }, ...title, el("dl", {}, ...rows));
  const old = document.querySelector(`[data-machine="${CSS.escape(id)}"]`);
  if (old) old.replaceWith(card);
  else {
    const all = [...$("#machines").children, card].sort((a, b) => a.dataset.machine.localeCompare(b.dataset.machine));
    $("#machines").replaceChildren(...all);
  }
  setTimeout(() => card.classList.remove("fresh"), 800);
  $("#machine-count").textContent = `(${machines.size})`;
}

function addAlert(a, prepend = true) {
  const when = new Date(a.ts || a.received_at || Date.now()).toLocaleTimeString();
  const item = el(
    "li",
    { class: String(a.severity || "").toLowerCase() },
    el("strong", {}, `${a.machine} · ${a.type}`),
    " ",
    a.message || "",
    el("small", {}, `${when}${a.severity ? " · " + a.severity : ""}`),
  );
  const list = $("#alerts");
  if (prepend) list.prepend(item); else list.append(item);
  while (list.children.length > 100) list.lastChild.remove();
}

function onEvent(event) {
  if (typeof detailEvent === "function") detailEvent(event); // the open machine's charts
  if (event.kind === "realtime") {
    const m = machines.get(event.machine) || { values: {}, config: null };
    Object.assign(m.values, event.values);
    if (event.units) m.units = { ...m.units, ...event.units };
    m.updated = Date.now();
    machines.set(event.machine, m);
    renderMachine(event.machine);
  } else if (event.kind === "tech") {
    const m = machines.get(event.machine) || { values: {}, config: null };
    m.config = { version: event.version, config: event.config };
    machines.set(event.machine, m);
    renderMachine(event.machine);
  } else if (event.kind === "alert") {
    addAlert(event);
    if (event.type === "node_offline" && machines.has(event.machine)) {
      const m = machines.get(event.machine);
      m.offline = event.details && event.details.state === "resolved" ? null : event.received_at;
      renderMachine(event.machine);
    }
  }
}

const WS_AUTH_CLOSE = 4401;
let retry = 500;
let socket = null;
let reconnect = null;
function connect() {
  clearTimeout(reconnect);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  socket = ws;
  const status = $("#live-status");
  status.textContent = "stream connecting";
  // The token goes first, whether or not the stream requires it (an open one acknowledges it).
  ws.onopen = () => { if (token()) ws.send(JSON.stringify({ action: "auth", token: token() })); };
  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.kind === "subscribed") { retry = 500; status.textContent = "live"; status.className = "pill ok"; }
    if (event.kind === "error") status.textContent = `stream: ${event.error}`;
    onEvent(event);
  };
  ws.onclose = (closed) => {
    if (socket !== ws) return; // replaced by restartStream()
    status.className = "pill bad";
    if (closed.code === WS_AUTH_CLOSE) {
      status.textContent = "stream: needs the API token";
      askForToken(); // the form's submit reconnects
      return;
    }
    status.textContent = closed.reason ? `stream: ${closed.reason}; reconnecting` : "stream reconnecting";
    reconnect = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  };
}

function restartStream() {
  const old = socket;
  socket = null;
  if (old) old.close();
  connect();
}

let loaded = false;
async function loadInitial() {
  if (loaded) return;
  try {
    const { machines: ids } = await getJSON("/machines");
    await Promise.all(ids.slice(0, 60).map(async (id) => {
      const m = await getJSON(`/machines/${encodeURIComponent(id)}`).catch(() => null);
      if (!m) return;
      const known = machines.get(id);
      if (known) { // the stream was first: its values are newer, the rest is the answer's
        known.units = { ...m.units, ...known.units };
        if (!known.config) known.config = m.config;
      } else {
        machines.set(id, { values: m.values, units: m.units, config: m.config, offline: m.offline_since_ms, updated: m.updated_ms });
      }
      renderMachine(id);
    }));
    const { alerts } = await getJSON("/alerts?limit=30");
    alerts.forEach((a) => addAlert(a, false));
    loaded = true;
  } catch (err) {
    $("#dead-note").textContent = `could not load machines: ${err.message}`;
  }
}

// --- dead letters -----------------------------------------------------------------------------
async function loadDead() {
  const queue = $("#dead-queue").value;
  const body = $("#dead tbody");
  if (!queue) { body.replaceChildren(); return; }
  try {
    const page = await getJSON(`/queues/${encodeURIComponent(queue)}/dead?limit=50`);
    const rows = page.dead_letters.map((d) => el(
      "tr", {},
      el("td", {}, d.id),
      el("td", { class: "data", title: JSON.stringify(d.data) }, JSON.stringify(d.data).slice(0, 120)),
      el("td", {}, d.reason),
      el("td", { class: "error", title: d.error }, d.error),
      el("td", {}, d.attempts),
      el("td", {}, new Date(d.failed_at * 1000).toLocaleString()),
      el("td", {}, Object.assign(el("button", { type: "button" }, "Replay"), { onclick: () => replay(queue, [d.id]) })),
    ));
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "7", class: "empty" }, `no dead letters in dead:${queue}`))]));
    $("#replay-all").disabled = page.total === 0;
  } catch (err) {
    $("#dead-note").textContent = err.message;
  }
}

async function replay(queue, ids) {
  try {
    const result = await getJSON(`/queues/${encodeURIComponent(queue)}/dead/replay`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: ids ? JSON.stringify({ ids }) : "",
    });
    $("#dead-note").textContent = `replayed ${result.replayed} of dead:${queue}`;
  } catch (err) {
    $("#dead-note").textContent = `replay failed: ${err.message}`;
  }
  loadDead();
  pollStats();
}

// --- start ------------------------------------------------------------------------------------
localStorage.removeItem(TOKEN_KEY); // earlier versions kept the token for good; now per tab
$("#token").value = token();
$("#token").oninput = () => storeToken($("#token").value.trim());
$("#login").onsubmit = (event) => {
  event.preventDefault();
  storeToken($("#login-token").value.trim());
  $("#token").value = token();
  $("#login-token").value = "";
  $("#login").hidden = true;
  pollHistory().then(pollStats);
  loadInitial();
  loadDead();
  restartStream();
};
$("#dead-queue").onchange = loadDead;
$("#replay-all").onclick = () => replay($("#dead-queue").value, null);
const tick = () => {
  $("#clock").textContent = new Date().toLocaleTimeString();
  for (const [id, m] of machines) if (stale(m) !== Boolean(m.stale)) renderMachine(id); // went quiet
};
tick();
setInterval(tick, 1000);
pollHistory().then(pollStats);
setInterval(pollStats, 2000);
// Samples every 2 s within 10 minutes, every minute beyond: polled as often as they change.
setInterval(() => {
  if (Number($("#history-window").value) <= 10 || Date.now() - historyPolled >= 60000) pollHistory();
}, 5000);
$("#history-window").addEventListener("change", () => pollHistory().then(pollStats));
setInterval(loadDead, 10000);
loadInitial();
connect();
