// tradepipe dashboard: polls /api/minutes and draws it with Plotly (served locally).
// The API sends exact decimal strings; charts plot Number(...) of them and keep the exact
// text in each point's customdata, which the hover label shows.
"use strict";

const BUY = "#16a34a";
const SELL = "#dc2626";
const CHARTS = [
  { id: "chart-counts", kind: "bar", traces: [["total_count_b", "buy", BUY], ["total_count_s", "sell", SELL]] },
  { id: "chart-base", kind: "bar", traces: [["total_btc_b", "buy", BUY], ["total_btc_s", "sell", SELL]] },
  { id: "chart-quote", kind: "bar", traces: [["total_usd_b", "buy", BUY], ["total_usd_s", "sell", SELL]] },
  { id: "chart-avg", kind: "line", traces: [["avg_b", "avg_b (buy)", BUY], ["avg_s", "avg_s (sell)", SELL]] },
  { id: "chart-spread", kind: "bar", traces: [["spread", "avg_b − avg_s", "#2563eb"]] },
];

const $ = (id) => document.getElementById(id);
const state = { timer: null, generation: 0, last: null };
window.tradepipe = state; // for tests and the curious: state.last is the last API answer

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    throw new Error((body && body.error) || `${url}: HTTP ${response.status}`);
  }
  return body;
}

function readParams() {
  const params = new URLSearchParams(location.search);
  if (params.get("range")) $("range").value = params.get("range");
  if (params.get("from")) $("from").value = params.get("from");
  if (params.get("to")) $("to").value = params.get("to");
  if (params.get("refresh")) $("refresh").value = params.get("refresh");
  $("custom").hidden = $("range").value !== "custom";
  return params.get("symbol");
}

function writeParams() {
  const params = new URLSearchParams();
  params.set("symbol", $("symbol").value);
  params.set("range", $("range").value);
  if ($("range").value === "custom") {
    params.set("from", $("from").value);
    params.set("to", $("to").value);
  }
  params.set("refresh", $("refresh").value);
  history.replaceState(null, "", `?${params}`);
}

async function loadSymbols(wanted) {
  const { symbols } = await getJSON("/api/symbols");
  const select = $("symbol");
  const current = wanted || select.value;
  if (symbols.join(",") !== Array.from(select.options, (o) => o.value).join(",")) {
    select.replaceChildren(...symbols.map((s) => new Option(s, s)));
  }
  if (symbols.includes(current)) select.value = current;
  return symbols;
}

function minutesUrl() {
  const params = new URLSearchParams({ symbol: $("symbol").value });
  if ($("range").value === "custom") {
    if ($("from").value) params.set("from", $("from").value);
    if ($("to").value) params.set("to", $("to").value);
  } else {
    params.set("last", $("range").value);
  }
  return `/api/minutes?${params}`;
}

function trace(chart, [column, name, color], x, columns) {
  const exact = columns[column];
  const t = {
    x,
    y: exact.map((v) => (v === null ? null : Number(v))),
    customdata: exact.map((v) => (v === null ? "—" : v)),
    meta: column,
    name,
    hovertemplate: `${name}: %{customdata}<extra></extra>`,
  };
  if (chart.kind === "bar") return { ...t, type: "bar", marker: { color } };
  const dash = column === "avg_s" ? "dot" : "solid"; // the two averages often overlap
  return { ...t, type: "scatter", mode: "lines+markers", marker: { size: 4, color }, line: { color, width: 1.5, dash } };
}

function render(payload) {
  const x = payload.columns.timestamp;
  const revision = `${payload.symbol}|${$("range").value}`;
  for (const chart of CHARTS) {
    const data = chart.traces.map((spec) => trace(chart, spec, x, payload.columns));
    const layout = {
      margin: { l: 70, r: 10, t: 8, b: 36 },
      barmode: "group",
      bargap: 0.15,
      hovermode: "x unified",
      showlegend: chart.traces.length > 1,
      legend: { orientation: "h", x: 0, y: 1.12 },
      xaxis: { type: "date", title: { text: "" } },
      yaxis: { automargin: true, exponentformat: "none", separatethousands: true },
      uirevision: revision,
    };
    Plotly.react(chart.id, data, layout, { displayModeBar: false, responsive: true });
  }
}

function describe(payload) {
  if (payload.count === 0) {
    return payload.newest
      ? `${payload.symbol}: no minutes in the selected range (newest is ${payload.newest} UTC)`
      : `${payload.symbol}: no minutes yet`;
  }
  const cols = payload.columns;
  const first = cols.timestamp[0].slice(0, 16);
  const last = cols.timestamp[payload.count - 1].slice(0, 16);
  const more = payload.truncated ? " (truncated)" : "";
  return `${payload.symbol}: ${payload.count} minutes${more}, ${first} → ${last} UTC · updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
  const generation = ++state.generation;
  clearTimeout(state.timer);
  try {
    const symbols = await loadSymbols();
    if (symbols.length === 0) {
      setStatus("no rows in trade_minutes yet: waiting for the first closed minute…");
    } else {
      const payload = await getJSON(minutesUrl());
      if (generation !== state.generation) return; // a newer refresh started meanwhile
      render(payload);
      state.last = payload;
      setStatus(describe(payload));
      writeParams();
    }
  } catch (err) {
    if (generation !== state.generation) return;
    setStatus(`cannot load data: ${err.message}`, true);
  }
  const seconds = Number($("refresh").value);
  if (seconds > 0 && generation === state.generation) {
    state.timer = setTimeout(refresh, seconds * 1000);
  }
}

async function start() {
  const wanted = readParams();
  try {
    await loadSymbols(wanted);
  } catch (err) {
    setStatus(`cannot load data: ${err.message}`, true);
  }
  for (const id of ["symbol", "range", "from", "to", "refresh"]) {
    $(id).addEventListener("change", () => {
      $("custom").hidden = $("range").value !== "custom";
      refresh();
    });
  }
  await refresh();
}

start();
