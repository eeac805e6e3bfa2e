// The irisflow dashboard: polls the gateway's JSON endpoints and draws them with Chart.js.
// Everything shown comes from the gateway (no CDN, no third-party call); values are inserted
// with textContent, never as HTML, because request ids and labels are client-controlled.
"use strict";

const POLL = { stats: 3000, feed: 2000, models: 10000, health: 3000, rollout: 3000 };
const WINDOW = { seconds: 600, buckets: 40 }; // ten minutes in 15-second buckets
const COLORS = ["#2f6fde", "#d64545", "#1f9d55", "#d98b1a", "#8e44ad", "#16a2b8", "#7f8c8d"];
const state = { live: null, features: [], classes: [], charts: {}, lastRequestId: null };
window.irisflow = state; // for the browser test and for curious operators

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "content-type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = body.error || {};
    throw new Error(`${response.status} ${error.code || ""}: ${error.message || response.statusText}`);
  }
  return body;
}

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(1)}%`);
const fixed = (x, n = 3) => (x == null ? "–" : Number(x).toFixed(n));

// ------------------------------------------------------------------ charts

function lineChart(id, datasets, yOptions = {}) {
  const chart = new Chart($(id), {
    type: "line",
    data: { labels: [], datasets },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      spanGaps: true,
      interaction: { mode: "index", intersect: false },
      elements: {
        point: { radius: 2, hitRadius: 6 },
        line: { borderWidth: 2, cubicInterpolationMode: "monotone" },
      },
      plugins: { legend: { display: datasets.length > 1, labels: { boxWidth: 10 } } },
      scales: {
        x: { ticks: { maxTicksLimit: 6, maxRotation: 0 }, grid: { display: false } },
        y: { beginAtZero: true, ...yOptions },
      },
    },
  });
  state.charts[id] = chart;
  return chart;
}

function dataset(label, color, extra = {}) {
  return { label, data: [], borderColor: color, backgroundColor: color + "22", fill: false, ...extra };
}

function makeCharts() {
  lineChart("chart-throughput", [dataset("predictions/s", COLORS[0], { fill: true })]);
  lineChart("chart-latency", [dataset("p50", COLORS[0]), dataset("p95", COLORS[1])]);
  lineChart("chart-accuracy", [dataset("accuracy", COLORS[2], { fill: true })], {
    min: 0, max: 100, ticks: { callback: (v) => `${v}%` },
  });
  lineChart("chart-drift", []);
}

function updateCharts(stats) {
  const labels = stats.buckets.map(clock);
  const set = (id, series) => {
    const chart = state.charts[id];
    chart.data.labels = labels;
    series.forEach((values, i) => { chart.data.datasets[i].data = values; });
    chart.update("none");
  };
  set("chart-throughput", [stats.throughput]);
  const ms = (values) => values.map((v) => (v == null ? null : 1000 * v));
  set("chart-latency", [ms(stats.latency_p50), ms(stats.latency_p95)]);
  set("chart-accuracy", [stats.accuracy.map((v) => (v == null ? null : 100 * v))]);
  const drift = state.charts["chart-drift"];
  const names = Object.keys(stats.drift);
  if (drift.data.datasets.length !== names.length) {
    drift.data.datasets = names.map((name, i) => dataset(name, COLORS[i % COLORS.length]));
    drift.options.plugins.legend.display = true;
  }
  set("chart-drift", names.map((name) => stats.drift[name]));
  const totals = stats.totals;
  $("throughput-total").textContent =
    `predictions / s · ${totals.predictions} in ${stats.window_seconds / 60} min, ${totals.errors} errors`;
  $("accuracy-total").textContent =
    `${pct(totals.accuracy)} of ${totals.feedback} labeled in the window`;
  renderDriftEvents(stats.drift_events);
  document.body.dataset.chartsDrawn = "true";
}

function renderDriftEvents(events) {
  const list = $("drift-events");
  list.replaceChildren();
  if (!events.length) list.append(el("li", { class: "muted", text: "none in the window" }));
  for (const e of events.slice(0, 20)) {
    list.append(el("li", {},
      el("span", { class: "warn", text: `${e.feature}` }), ` ${e.detector} `,
      `${fixed(e.statistic)} > ${fixed(e.threshold)} · v${e.model_version ?? "?"} · ${clock(e.detected_at)}`));
  }
}

// ------------------------------------------------------------------ predict form

function renderForm(detail) {
  const box = $("feature-inputs");
  box.replaceChildren();
  for (const name of detail.feature_names) {
    const ref = detail.reference_stats[name];
    const value = ref ? Number(ref.mean).toFixed(1) : "0";
    box.append(el("label", { class: "field" }, name,
      el("input", { name, id: `feature-${name}`, type: "number", step: "any", required: "", value })));
  }
  $("predict-button").disabled = false;
}

async function onPredict(event) {
  event.preventDefault();
  $("predict-error").textContent = "";
  const features = {};
  for (const name of state.features) features[name] = Number($(`feature-${name}`).value);
  $("predict-button").disabled = true;
  try {
    const answer = await api("/v1/predict", { method: "POST", body: JSON.stringify({ features }) });
    showAnswer(answer);
    refreshFeed();
  } catch (error) {
    $("predict-error").textContent = error.message;
  } finally {
    $("predict-button").disabled = false;
  }
}

function showAnswer(answer) {
  state.lastRequestId = answer.request_id;
  $("predict-result").hidden = false;
  $("result-label").textContent = answer.label;
  $("result-meta").textContent =
    `model v${answer.model_version} · ${(1000 * answer.latency_seconds).toFixed(1)} ms · ${answer.request_id}`;
  const bars = $("result-probabilities");
  bars.replaceChildren();
  const sorted = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
  sorted.forEach(([label, p], i) => {
    const fill = el("span");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bars.append(el("span", { text: label }), el("div", { class: i === 0 ? "bar top" : "bar" }, fill),
      el("span", { class: "muted", text: pct(p) }));
  });
  const buttons = $("feedback-buttons");
  buttons.replaceChildren();
  $("feedback-status").textContent = "";
  for (const label of state.classes) {
    buttons.append(el("button", { type: "button", class: "small ghost", text: label,
      onclick: () => sendFeedback(answer.request_id, label) }), " ");
  }
}

async function sendFeedback(requestId, label) {
  try {
    await api("/v1/feedback", { method: "POST", body: JSON.stringify({ request_id: requestId, label }) });
    $("feedback-status").textContent = `sent: ${label}`;
  } catch (error) {
    $("feedback-status").textContent = error.message;
  }
}

// ------------------------------------------------------------------ feed, models, health

async function refreshFeed() {
  const page = await api("/v1/audit?limit=12&order=desc");
  const body = $("feed-body");
  body.replaceChildren();
  if (!page.records.length) {
    body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "no predictions yet" })));
  }
  for (const r of page.records) {
    const top = r.probabilities && r.label ? r.probabilities[r.label] : null;
    const label = r.kind === "batch" ? `batch ×${r.n_instances}` : r.label ?? (r.error ? "error" : "…");
    let feedback = "";
    let cls = "";
    if (r.feedback) {
      feedback = r.feedback.label + (r.feedback.correct === true ? " ✓" : r.feedback.correct === false ? " ✗" : "");
      cls = r.feedback.correct === false ? "bad" : "ok";
    }
    body.append(el("tr", {},
      el("td", { text: clock(r.at) }),
      el("td", { class: "id", title: r.request_id, text: r.request_id }),
      el("td", { class: r.error ? "bad" : "", text: label, title: r.error || "" }),
      el("td", { text: top == null ? "" : pct(top) }),
      el("td", { text: r.model_version ?? "" }),
      el("td", { text: r.latency_seconds == null ? "" : `${(1000 * r.latency_seconds).toFixed(1)} ms` }),
      el("td", { class: cls, text: feedback })));
  }
  $("feed-count").textContent = `latest ${page.count}`;
}

async function refreshModels() {
  const list = await api("/v1/models");
  const body = $("models-body");
  body.replaceChildren();
  if (!list.versions.length) {
    body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "no versions yet" })));
  }
  for (const v of [...list.versions].reverse()) {
    const action = v.live
      ? el("span", { class: "badge", text: "live" })
      : el("button", { type: "button", class: "small ghost", text: "promote", onclick: () => promote(v.version) });
    const m = v.metrics;
    body.append(el("tr", { class: v.live ? "live" : "" },
      el("td", { text: `v${v.version}` }), el("td", { text: v.algorithm }), el("td", { text: v.trigger }),
      el("td", { text: new Date(v.created_at * 1000).toLocaleString([], { hour12: false }) }),
      el("td", { text: fixed(m.cv_f1_macro_mean) }), el("td", { text: fixed(m.holdout_f1_macro) }),
      el("td", {}, action)));
  }
  $("models-note").textContent = list.note;
  if (list.live_version != null && list.live_version !== state.live) {
    state.live = list.live_version;
    const detail = await api(`/v1/models/${list.live_version}`);
    state.features = detail.feature_names;
    state.classes = detail.class_labels;
    renderForm(detail);
  }
}

async function refreshHealth() {
  let body;
  try {
    const response = await fetch("/health/ready");
    body = await response.json();
  } catch (error) {
    body = { kafka: false, model_version: null, instance_id: "unreachable" };
  }
  const kafka = $("pill-kafka");
  kafka.textContent = body.kafka ? "Kafka ok" : "Kafka down";
  kafka.className = `pill ${body.kafka ? "ok" : "bad"}`;
  const model = $("pill-model");
  model.textContent = body.model_version == null ? "no model live" : `model v${body.model_version} live`;
  model.className = `pill ${body.model_version == null ? "bad" : "ok"}`;
  $("pill-instance").textContent = `gateway ${body.instance_id}`;
  $("pill-updated").textContent = `updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
}

// ------------------------------------------------------------------ rollout

const ms1 = (seconds) => (seconds == null ? "–" : `${(1000 * seconds).toFixed(1)} ms`);
const errorRate = (r) => (r.scored ? r.errors / r.scored : null);
// One row per number the policy judges, champion and candidate side by side; ``better`` says
// which way is better, so the candidate's cell is marked when it differs from the champion's.
const ROLLOUT_ROWS = [
  { name: "requests scored (served)", show: (r) => `${r.scored} (${r.served})` },
  { name: "agreement with champion", value: (r) => r.agreement, show: (r) => pct(r.agreement) },
  { name: "class mix PSI vs training", value: (r) => r.class_psi, show: (r) => fixed(r.class_psi), better: "lower" },
  { name: "confidence mean", value: (r) => r.confidence_mean, show: (r) => fixed(r.confidence_mean) },
  { name: "worker latency p99", value: (r) => r.latency_p99_seconds, show: (r) => ms1(r.latency_p99_seconds), better: "lower" },
  { name: "error rate", value: errorRate, show: (r) => `${pct(errorRate(r))} (${r.errors})`, better: "lower" },
  { name: "accuracy, labeled", value: (r) => r.accuracy, show: (r) => `${pct(r.accuracy)} (${r.labeled} labels)`, better: "higher" },
  { name: "accuracy, estimated (no labels)", value: (r) => r.estimated_accuracy, show: (r) => `${pct(r.estimated_accuracy)} (${r.estimated_samples})`, better: "higher" },
  { name: "macro-F1, labeled", value: (r) => r.macro_f1, show: (r) => fixed(r.macro_f1), better: "higher" },
];

function compared(row, champion, candidate) {
  if (!row.better || !champion || !candidate) return "";
  const [a, b] = [row.value(champion), row.value(candidate)];
  if (a == null || b == null || a === b) return "";
  return (row.better === "higher") === (b > a) ? "better" : "worse";
}

function renderRollout(r) {
  const stage = r.stage || "none";
  const badge = $("rollout-stage");
  badge.textContent = stage.replace("_", " ");
  badge.className = `stage ${stage}`;
  const versions = r.candidate_version == null ? "" :
    `candidate v${r.candidate_version}${r.candidate ? ` (${r.candidate.algorithm})` : ""} vs champion v${r.champion_version ?? "?"}`;
  $("rollout-summary").textContent = r.stage == null ? "no rollout yet" :
    `${versions} · share ${pct(r.share)} · ${r.automatic ? "automatic" : "manual"} · updated ${clock(r.updated_at)}`;
  const byRole = Object.fromEntries(r.readings.map((x) => [x.role, x]));
  const champion = byRole.champion;
  const candidate = byRole.candidate;
  $("rollout-head").replaceChildren(el("tr", {},
    el("th", { text: "live, on the same requests" }),
    el("th", { text: champion ? `champion v${champion.version}` : "champion" }),
    el("th", { text: candidate ? `candidate v${candidate.version}` : "candidate" })));
  const body = $("rollout-body");
  body.replaceChildren();
  if (!r.readings.length) {
    body.append(el("tr", {}, el("td", { colspan: "3", class: "muted",
      text: r.stage == null ? "start one with `irisflow rollout start V --shadow` or POST /v1/rollout" : "no readings yet" })));
  }
  for (const row of r.readings.length ? ROLLOUT_ROWS : []) {
    body.append(el("tr", {},
      el("td", { text: row.name }),
      el("td", { text: champion ? row.show(champion) : "–" }),
      el("td", { class: compared(row, champion, candidate), text: candidate ? row.show(candidate) : "–" })));
  }
  const steps = $("rollout-steps");
  steps.replaceChildren();
  if (!r.steps.length) steps.append(el("li", { class: "muted", text: "none yet" }));
  for (const s of r.steps) {
    const numbers = Object.entries(s.numbers).slice(0, 4).map(([k, v]) => `${k} ${fixed(v)}`).join(", ");
    steps.append(el("li", {},
      `${clock(s.at)} `, el("span", { class: `stage ${s.stage}`, text: s.stage.replace("_", " ") }),
      ` v${s.version} · share ${pct(s.share)} · by ${s.decided_by}`,
      el("span", { class: "why", text: s.reason + (numbers ? ` (${numbers})` : "") })));
  }
  $("rollout-promote").disabled = !r.active;
  $("rollout-abort").disabled = !r.active;
  const last = r.last_command;
  $("rollout-command").textContent = last == null ? "" :
    `last command: ${last.action} ${last.accepted ? "applied" : `refused (${last.status}): ${last.error}`}`;
}

async function refreshRollout() {
  renderRollout(await api("/v1/rollout"));
}

// ------------------------------------------------------------------ admin

async function admin(path, body) {
  const key = $("api-key").value;
  sessionStorage.setItem("irisflow-api-key", key);
  const status = $("admin-status");
  status.className = "muted";
  try {
    const answer = await api(path, {
      method: "POST", headers: { "X-API-Key": key }, body: JSON.stringify(body || {}),
    });
    if (answer.status === "pending") status.textContent = `pending: ${answer.message}`;
    else if ("stage" in answer) status.textContent = `rollout ${answer.stage} (v${answer.candidate_version})`;
    else status.textContent = answer.version != null
      ? `accepted: v${answer.version} republished from ${answer.source}`
      : `accepted: retrain of ${answer.model_name} requested (“${answer.reason}”)`;
    status.className = "ok";
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
}

const promote = (version) => admin(`/v1/models/${version}/promote`).then(refreshModels);
const rolloutCommand = (action) =>
  admin(`/v1/rollout/${action}`, { reason: "from the dashboard" }).then(refreshRollout);

function every(ms, task) {
  const run = () => task().catch((error) => console.warn(error));
  run();
  setInterval(run, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem("irisflow-api-key") || "";
  $("predict-form").addEventListener("submit", onPredict);
  $("retrain-button").addEventListener("click",
    () => admin("/v1/retrain", { reason: $("retrain-reason").value || "dashboard" }));
  $("rollout-promote").addEventListener("click", () => rolloutCommand("promote"));
  $("rollout-abort").addEventListener("click", () => rolloutCommand("abort"));
  makeCharts();
  every(POLL.health, refreshHealth);
  every(POLL.models, refreshModels);
  every(POLL.feed, refreshFeed);
  every(POLL.rollout, refreshRollout);
  every(POLL.stats, async () =>
    updateCharts(await api(`/v1/stats?window=${WINDOW.seconds}&buckets=${WINDOW.buckets}`)));
});
