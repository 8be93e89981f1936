// tradepipe dashboard: polls /api/minutes, /api/series and /api/analysis and draws them with
// Plotly (served locally). The API sends exact decimal strings; charts plot Number(...) of
// them and keep the exact text in each point's customdata, which the hover label shows.
// chart-flow: candles, quote volume, delta and CVD on one shared (linked) time axis;
// chart-analysis: the next-minute returns against the flow, fitted server-side (scipy).
// Speed (docs/orderflow.md, "How the page draws a long range"): charts in view are drawn at
// once, the others when scrolled into view; long ranges draw bars as step areas and each
// scatter panel a sample of its points (every value stays in the traces).
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
const state = {
  timer: null, generation: 0, last: null, series: null, analysis: null, renderMs: null, fetchMs: null,
  drawn: [], deferred: [], // the last refresh's charts: drawn at once (in view), or when scrolled in
  lateDrawnAt: null, // performance.now() after the last drawing of a chart scrolled into view
};
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
  state.wantedCompare = (params.get("compare") || "").split(",").filter(Boolean);
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
  const compare = compareSymbols();
  if (compare.length) params.set("compare", compare.join(","));
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
  const others = symbols.filter((s) => s !== select.value);
  const chosen = state.wantedCompare || compareSymbols();
  state.wantedCompare = null;
  const compare = $("compare");
  if (others.join(",") !== Array.from(compare.options, (o) => o.value).join(",")) {
    compare.replaceChildren(...others.map((s) => new Option(s, s)));
  }
  for (const o of compare.options) o.selected = chosen.includes(o.value);
  return symbols;
}

function compareSymbols() {
  return Array.from($("compare").selectedOptions, (o) => o.value);
}

function minutesUrl(path = "/api/minutes") {
  const params = new URLSearchParams({ symbol: $("symbol").value });
  if ($("range").value === "custom") {
    if ($("from").value) params.set("from", $("from").value);
    if ($("to").value) params.set("to", $("to").value);
  } else {
    params.set("last", $("range").value);
  }
  return `${path}?${params}`;
}

const num = (v) => (v === null ? null : Number(v));
const exact = (v) => (v === null ? "—" : v);
const CONFIG = { displayModeBar: false, responsive: true };

function renderFlow(payload, series, compares) {
  const c = payload.columns;
  const s = series.columns;
  const x = c.timestamp;
  const bar = (meta, name, xs, values, yaxis, color) => ({
    type: "bar", x: xs, y: values.map(num),
    customdata: values.map(exact), meta, name, yaxis, marker: { color },
    hovertemplate: `${name}: %{customdata}<extra></extra>`,
  });
  const line = (meta, name, xs, values, color, dash) => ({
    type: "scatter", mode: "lines", x: xs, y: values.map(num), customdata: values.map(exact),
    meta, name, yaxis: "y4", line: { color, width: 1.5, dash },
    hovertemplate: `${name}: %{customdata}<extra></extra>`,
  });
  const volumeArea = (meta, name, xs, values, color) => ({ // stacked as the relative bars are
    type: "scatter", mode: "lines", x: xs, y: values.map(num), customdata: values.map(exact),
    meta, name, yaxis: "y2", stackgroup: "volume", line: { shape: "hvh", width: 0.5, color },
    fillcolor: color, hovertemplate: `${name}: %{customdata}<extra></extra>`,
  });
  const data = [
    {
      type: "candlestick", x, meta: "ohlc", name: payload.symbol, yaxis: "y",
      open: c.open.map(num), high: c.high.map(num), low: c.low.map(num), close: c.close.map(num),
      increasing: { line: { color: BUY } }, decreasing: { line: { color: SELL } },
      hovertext: x.map((_, i) => `O ${c.open[i]} H ${c.high[i]} L ${c.low[i]} C ${c.close[i]}`),
      hoverinfo: "x+text",
    },
    ...(x.length > STEP_AREA_ABOVE
      ? [volumeArea("total_usd_b", "buy volume", x, c.total_usd_b, BUY), volumeArea("total_usd_s", "sell volume", x, c.total_usd_s, SELL)]
      : [bar("total_usd_b", "buy volume", x, c.total_usd_b, "y2", BUY), bar("total_usd_s", "sell volume", x, c.total_usd_s, "y2", SELL)]),
    {
      ...bar("delta_quote", "delta (buy − sell)", s.timestamp, s.delta_quote, "y3", BUY),
      marker: { color: s.delta_quote.map((v) => (v !== null && v.startsWith("-") ? SELL : BUY)) },
    },
    line("cvd_day_quote", `${payload.symbol} CVD since 00:00 UTC`, s.timestamp, s.cvd_day_quote, "#2563eb", "solid"),
    line("cvd_range_quote", `${payload.symbol} CVD over the range`, s.timestamp, s.cvd_range_quote, "#2563eb", "dot"),
    ...compares.map((cs, i) =>
      line(`cvd_range_quote:${cs.symbol}`, `${cs.symbol} CVD over the range`, cs.columns.timestamp,
        cs.columns.cvd_range_quote, ["#9333ea", "#ea580c", "#0891b2", "#65a30d"][i % 4], "dot")),
  ];
  const axis = (domain, title) => ({
    domain, anchor: "x", automargin: true, exponentformat: "none", separatethousands: true,
    title: { text: title, font: { size: 11 } },
  });
  const layout = {
    margin: { l: 80, r: 10, t: 8, b: 36 },
    barmode: "relative",
    bargap: 0.1,
    hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.06 },
    xaxis: { type: "date", anchor: "y4", rangeslider: { visible: false } },
    yaxis: axis([0.56, 1], "price"),
    yaxis2: axis([0.40, 0.53], "quote volume"),
    yaxis3: axis([0.22, 0.37], "delta"),
    yaxis4: axis([0, 0.19], "CVD (quote)"),
    uirevision: `${payload.symbol}|${$("range").value}`,
  };
  return drawWhenSeen("chart-flow", () => Plotly.react("chart-flow", data, layout, CONFIG));
}

// A panel draws at most this many of its points (Plotly's marker.maxdisplayed: every k-th point
// of those in view, k = ceil(n / MAX_DRAWN_POINTS); zooming in draws them all). The trace holds
// every point (hover, zoom) and the line, r and its interval are computed over all of them.
const MAX_DRAWN_POINTS = 480;
const PREDICTOR_NAMES = { imbalance: "imbalance", delta_quote: "delta (quote)", spread: "avg_b − avg_s" };
const fmt = (v, digits = 4) => (v === null ? "—" : Number(v).toPrecision(digits));

function renderAnalysis(analysis) {
  const data = [];
  const layout = {
    margin: { l: 70, r: 10, t: 10, b: 40 },
    showlegend: false,
    grid: { rows: 3, columns: 2, pattern: "independent", ygap: 0.35, xgap: 0.12 },
  };
  analysis.panels.forEach((p, i) => {
    const n = i + 1;
    const axes = { xaxis: `x${n === 1 ? "" : n}`, yaxis: `y${n === 1 ? "" : n}` };
    const key = `${p.predictor}:${p.horizon}`;
    data.push({
      type: "scatter", mode: "markers", x: p.points.x, y: p.points.y, meta: `points:${key}`,
      marker: { size: 4, color: "rgba(37, 99, 235, 0.6)", maxdisplayed: MAX_DRAWN_POINTS }, ...axes,
      hovertemplate: `${PREDICTOR_NAMES[p.predictor]} %{x}<br>return +${p.horizon} min %{y}<extra></extra>`,
    });
    if (p.line) {
      data.push({ type: "scatter", mode: "lines", x: p.line.x, y: p.line.y, meta: `line:${key}`,
        line: { color: SELL, width: 2 }, hoverinfo: "skip", ...axes });
    }
    const suffix = n === 1 ? "" : n;
    layout[`xaxis${suffix}`] = { title: { text: `${PREDICTOR_NAMES[p.predictor]} (r ${fmt(p.r, 3)}, n ${p.n})`, font: { size: 11 } }, exponentformat: "none" };
    layout[`yaxis${suffix}`] = { title: { text: `return +${p.horizon} min`, font: { size: 11 } }, tickformat: ".3%" };
  });
  const rows = analysis.panels.map((p) => {
    const tr = document.createElement("tr");
    const ci = p.ci_low === null ? "—" : `${fmt(p.ci_low, 3)} … ${fmt(p.ci_high, 3)}`;
    const cells = [PREDICTOR_NAMES[p.predictor], `+${p.horizon} min`, String(p.n), fmt(p.slope), fmt(p.r, 3), ci,
      p.p === null ? (p.reason || "—") : fmt(p.p, 3)];
    tr.replaceChildren(...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
    tr.dataset.key = `${p.predictor}:${p.horizon}`;
    return tr;
  });
  document.querySelector("#analysis-table tbody").replaceChildren(...rows);
  return drawWhenSeen("chart-analysis", () => Plotly.react("chart-analysis", data, layout, CONFIG));
}

// Charts are drawn when they are in view: a refresh draws the charts the window shows now and
// keeps, for each chart outside it, a drawing of the newest data that runs when it scrolls in.
const deferred = new Map(); // chart id -> () => drawing of the newest answer
state.waiting = () => Array.from(deferred.keys()); // charts whose newest drawing waits to be seen
const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const draw = entry.isIntersecting && deferred.get(entry.target.id);
    if (draw) {
      deferred.delete(entry.target.id);
      draw();
      state.lateDrawnAt = performance.now();
    }
  }
});

function inView(el) {
  const r = el.getBoundingClientRect();
  return r.bottom > 0 && r.top < window.innerHeight && r.right > 0 && r.left < window.innerWidth;
}

function drawWhenSeen(id, draw) {
  const el = $(id);
  observer.observe(el); // observing twice is a no-op
  if (inView(el)) {
    deferred.delete(id);
    state.drawn.push(id);
    return draw();
  }
  deferred.set(id, draw);
  state.deferred.push(id);
  return null;
}

function setDownloads() {
  for (const format of ["csv", "parquet"]) {
    const url = new URL(minutesUrl("/api/export"), location.href);
    url.searchParams.set("format", format);
    $(`download-${format}`).href = `${url.pathname}${url.search}`;
  }
}

// Above this many minutes a bar would be narrower than ~2 px on a half-width chart: bars are
// drawn as a step area instead (line.shape "hvh": each minute's value from midpoint to
// midpoint, as its bar would be), the same heights from one SVG path per series, not one per bar.
const STEP_AREA_ABOVE = 150;
const fill = (color) => `${color}99`; // 60 % opaque: buy and sell show where they overlap

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
  if (chart.kind === "bar" && x.length > STEP_AREA_ABOVE) {
    return { ...t, type: "scatter", mode: "lines", line: { shape: "hvh", width: 0.5, color }, fill: "tozeroy", fillcolor: fill(color) };
  }
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
    drawWhenSeen(chart.id, () => Plotly.react(chart.id, data, layout, CONFIG));
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
      const started = performance.now();
      const [payload, series, analysis] = await Promise.all([
        getJSON(minutesUrl()), getJSON(minutesUrl("/api/series")), getJSON(minutesUrl("/api/analysis")),
      ]);
      const compares = await Promise.all(compareSymbols().map((symbol) => {
        const params = new URLSearchParams({ symbol });
        if (payload.from) params.set("from", payload.from);
        if (payload.to) params.set("to", payload.to);
        return getJSON(`/api/series?${params}`);
      }));
      if (generation !== state.generation) return; // a newer refresh started meanwhile
      state.fetchMs = performance.now() - started;
      state.drawn = [];
      state.deferred = [];
      render(payload);
      await Promise.all([renderFlow(payload, series, compares), renderAnalysis(analysis)]);
      state.last = payload;
      state.series = series;
      state.analysis = analysis;
      state.renderMs = performance.now() - started;
      setStatus(describe(payload));
      setDownloads();
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
  for (const id of ["symbol", "range", "from", "to", "refresh", "compare"]) {
    $(id).addEventListener("change", () => {
      $("custom").hidden = $("range").value !== "custom";
      refresh();
    });
  }
  await refresh();
}

start();
