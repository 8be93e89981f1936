// tradepipe dashboard: the check-status strip (what `tradepipe verify` proved, docs/verify.md).
// Self-contained: it needs only two elements in the page, #checks-strip (under the charts) and
// #checks-proven (in the header), and follows the page's symbol and range when the page has
// them (#symbol, #range, #from, #to, ?symbol=), else the first symbol's last hour.
"use strict";

(() => {
  const STATUSES = ["exact", "hole", "mismatch", "missing", "unchecked"];
  const COLORS = {
    exact: "#16a34a", hole: "#dc2626", mismatch: "#d97706", missing: "#7c3aed", unchecked: "#d1d5db",
  };
  // Styles live here, not in dashboard.css, so the strip stays one file (CSP allows inline style).
  const STYLE = `
#checks-proven { margin: 0; color: #16a34a; font-weight: 600; }
#checks-proven.error { color: #dc2626; }
.checks { margin: 0 0.75rem 0.75rem; background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 0.4rem 0.6rem; }
.checks:empty { display: none; }
.checks-row { display: flex; gap: 1px; height: 18px; }
.checks-row .check { flex: 1 1 0; min-width: 1px; }
.checks-legend { margin: 0.3rem 0 0; color: #6b7280; }
.checks-legend .check { display: inline-block; width: 0.8em; height: 0.8em; vertical-align: -0.1em; }`;
  const style = document.createElement("style");
  style.textContent = STYLE;
  document.head.append(style);
  const state = { last: null, error: null };
  window.tradepipeChecks = state; // for tests and the curious: the last /api/checks answer

  const byId = (id) => document.getElementById(id);
  const value = (id) => (byId(id) ? byId(id).value : "");

  async function symbol() {
    const wanted = value("symbol") || new URLSearchParams(location.search).get("symbol");
    if (wanted) return wanted;
    const response = await fetch("/api/symbols", { cache: "no-store" });
    const body = await response.json();
    return (body.symbols || [])[0] || "";
  }

  function rangeParams(params) {
    const range = value("range") || new URLSearchParams(location.search).get("range") || "60";
    if (range === "custom") {
      if (value("from")) params.set("from", value("from"));
      if (value("to")) params.set("to", value("to"));
    } else {
      params.set("last", range);
    }
    return params;
  }

  function cell(minute, status) {
    const el = document.createElement("span");
    el.className = `check check-${status}`;
    el.dataset.minute = minute;
    el.dataset.status = status;
    el.title = `${minute} UTC: ${status}`;
    el.style.background = COLORS[status] || COLORS.unchecked;
    return el;
  }

  function legend(counts) {
    const el = document.createElement("p");
    el.className = "checks-legend";
    for (const status of STATUSES) {
      const item = document.createElement("span");
      item.dataset.status = status;
      item.dataset.count = String(counts[status] || 0);
      const swatch = cell("", status);
      swatch.title = status;
      item.append(swatch, ` ${status} ${counts[status] || 0}`);
      el.append(item, " ");
    }
    return el;
  }

  function render(payload) {
    const strip = byId("checks-strip");
    if (strip) {
      const row = document.createElement("div");
      row.className = "checks-row";
      payload.minutes.forEach((m, i) => row.append(cell(m, payload.status[i])));
      const title = document.createElement("h2");
      title.textContent = `Verified against the exchange's 1-minute klines (${payload.symbol})`;
      strip.replaceChildren(title, row, legend(payload.counts));
    }
    const proven = byId("checks-proven");
    if (proven) {
      const total = payload.minutes.length;
      proven.dataset.proven = payload.proven === null ? "" : payload.proven;
      proven.textContent = payload.proven === null
        ? "proven: no minutes"
        : `proven: ${(Number(payload.proven) * 100).toFixed(1)}% (${payload.counts.exact}/${total} minutes)`;
      proven.classList.toggle("error", payload.counts.exact < total);
    }
  }

  async function refresh() {
    try {
      const sym = await symbol();
      if (sym) {
        const params = rangeParams(new URLSearchParams({ symbol: sym }));
        const response = await fetch(`/api/checks?${params}`, { cache: "no-store" });
        const body = await response.json();
        if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
        state.last = body;
        state.error = null;
        render(body);
      }
    } catch (err) {
      state.error = String(err.message || err);
      const proven = byId("checks-proven");
      if (proven) proven.textContent = `checks: ${state.error}`;
    }
    const seconds = Number(value("refresh") || new URLSearchParams(location.search).get("refresh") || 3);
    setTimeout(refresh, (seconds > 0 ? seconds : 3) * 1000);
  }

  for (const id of ["symbol", "range", "from", "to"]) {
    if (byId(id)) byId(id).addEventListener("change", () => setTimeout(refresh, 0));
  }
  refresh();
})();
