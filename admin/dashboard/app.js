// Verge dashboard: plain JavaScript, no dependencies. Every value from the server is put in
// the page as text (textContent, attribute values), never as HTML.
"use strict";

const TOKEN_KEY = "verge-admin-token";
const KEEP = 900; // points kept in the browser: 15 minutes at one per second

const state = {
  points: [], seq: 0, intervalMs: 1000, page: "", streamAbort: null, ticks: [], cluster: false,
};

// ---- DOM helpers -------------------------------------------------------------------------

// el builds an element; attrs set properties (on*: listeners), children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e[k] = v; // a property, so that morph can carry it over
    else if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k in e && k !== "list") e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel, root) => (root || document).querySelector(sel);

// morph makes the node old look like neu, keeping old's nodes wherever the element names
// match: a live page redraws every second, and a button being pressed or focused, or a file
// input holding a chosen file, must stay the same node.
function morph(old, neu) {
  if (old.nodeType !== neu.nodeType || old.nodeName !== neu.nodeName) { old.replaceWith(neu); return; }
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== neu.nodeValue) old.nodeValue = neu.nodeValue;
    return;
  }
  for (const a of [...old.attributes]) {
    if (a.name !== "style" && !neu.hasAttribute(a.name)) old.removeAttribute(a.name);
  }
  for (const a of neu.attributes) {
    if (a.name !== "style" && old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
  }
  if (old.style.cssText !== neu.style.cssText) old.style.cssText = neu.style.cssText; // CSSOM: allowed by the CSP
  for (const h of ["onclick", "onchange", "onsubmit"]) if (old[h] !== neu[h]) old[h] = neu[h];
  const oc = [...old.childNodes], nc = [...neu.childNodes];
  nc.forEach((n, i) => { if (i < oc.length) morph(oc[i], n); else old.append(n); });
  for (let i = nc.length; i < oc.length; i++) oc[i].remove();
}

function fmtNum(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(digits === undefined ? (Math.abs(v) < 10 && v !== Math.round(v) ? 1 : 0) : digits);
}
function fmtMs(v) { return v ? (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 1 : 0) + " ms") : "–"; }
function fmtBytes(v) {
  if (!v) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return v.toFixed(i && v < 10 ? 1 : 0) + " " + u[i];
}
function fmtPct(v) { return v < 0 || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }

// ---- API ---------------------------------------------------------------------------------

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api calls the admin API; body is sent as JSON unless type says otherwise. State-changing
// calls always carry a Content-Type, as the API requires.
async function api(method, path, body, type) {
  const headers = authHeaders();
  const opts = { method, headers, cache: "no-store", credentials: "omit" };
  if (method !== "GET") {
    headers["Content-Type"] = type || "application/json";
    opts.body = body === undefined ? "{}" : (type ? body : JSON.stringify(body));
  }
  const r = await fetch(path, opts);
  if (r.status === 401) { askToken(); throw new APIError(401, "the admin token is required"); }
  const ct = r.headers.get("Content-Type") || "";
  const data = ct.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new APIError(r.status, (data && data.error) || r.statusText);
  return data;
}

function askToken(message) {
  const d = $("#login");
  $("#login-error").textContent = message || "";
  if (!d.open) d.showModal();
}

function setupLogin() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const tok = $("#login-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, tok);
    try {
      await api("GET", "/readyz").catch((e) => { if (e.status !== 503) throw e; });
      $("#login").close();
      $("#login-token").value = "";
      startStream();
      render();
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#login-error").textContent = e.status === 401 ? "This token is not accepted." : e.message;
    }
  });
}

// ---- live stream -------------------------------------------------------------------------

function addPoints(body) {
  state.intervalMs = body.interval_ms || state.intervalMs;
  for (const p of body.points || []) {
    if (p.seq > state.seq || state.points.length === 0) state.points.push(p);
  }
  if (body.seq < state.seq) state.points = body.points || []; // the server restarted
  state.seq = body.seq;
  if (state.points.length > KEEP) state.points.splice(0, state.points.length - KEEP);
  for (const fn of state.ticks) fn();
}

// startStream reads GET /stats/events, a text/event-stream, with fetch so that it can send
// the token; it reconnects after an error, continuing after the last point it has.
async function startStream() {
  if (state.streamAbort) state.streamAbort.abort();
  const ctl = new AbortController();
  state.streamAbort = ctl;
  const live = $("#live");
  try {
    const r = await fetch("/stats/events?after=" + state.seq, { headers: authHeaders(), signal: ctl.signal, cache: "no-store" });
    if (r.status === 401) { live.textContent = "signed out"; askToken(); return; }
    if (!r.ok) { live.textContent = "no live data (" + r.status + ")"; return; }
    live.textContent = "live";
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) addPoints(JSON.parse(data));
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (state.streamAbort !== ctl) return;
  live.textContent = "reconnecting…";
  setTimeout(() => { if (state.streamAbort === ctl) startStream(); }, 2000);
}

function last(n) { return state.points.slice(-n); }

// avg averages f over the last n points (rates are noisy one second at a time).
function avg(n, f) {
  const pts = last(n);
  if (!pts.length) return undefined;
  let s = 0, c = 0;
  for (const p of pts) { const v = f(p); if (v !== undefined && v !== null && !Number.isNaN(v)) { s += v; c++; } }
  return c ? s / c : undefined;
}

// ---- charts ------------------------------------------------------------------------------

// chart draws series (each {label, color, get}) over the kept points on a canvas, with a
// text alternative kept up to date.
function chart(title, series, unit) {
  const canvas = el("canvas", { role: "img", "aria-label": title });
  const legend = series.map((s) => el("span", { class: "key", style: "--kc:" + s.color, text: s.label }));
  const summary = el("span", { class: "note" });
  const fig = el("figure", {}, canvas, el("figcaption", {}, el("strong", { text: title }), legend, summary));
  const draw = () => {
    if (!canvas.isConnected) return;
    const css = getComputedStyle(document.documentElement);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    const pts = state.points;
    let maxV = 0;
    for (const s of series) for (const p of pts) maxV = Math.max(maxV, s.get(p) || 0);
    if (maxV <= 0) maxV = 1;
    const now = pts.length ? pts[pts.length - 1].t : Date.now();
    const span = KEEP * state.intervalMs;
    const left = 44, bottom = h - 16;
    g.strokeStyle = css.getPropertyValue("--line"); g.fillStyle = css.getPropertyValue("--muted");
    g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
    for (const f of [0, 0.5, 1]) {
      const y = bottom - f * (bottom - 6);
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(f ? unit(maxV * f) : "0", 2, y + 4);
    }
    g.fillText("−15 min", left, h - 2);
    g.fillText("now", w - 24, h - 2);
    for (const s of series) {
      g.strokeStyle = css.getPropertyValue(s.color.slice(4, -1)) || s.color;
      g.lineWidth = 1.5;
      g.beginPath();
      let started = false;
      for (const p of pts) {
        const x = left + (w - left) * (1 - (now - p.t) / span);
        if (x < left) continue;
        const y = bottom - ((s.get(p) || 0) / maxV) * (bottom - 6);
        if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
      }
      g.stroke();
    }
    summary.textContent = "now: " + series.map((s) => s.label + " " + unit(avg(5, s.get) || 0)).join(", ");
  };
  return { node: fig, draw };
}

// ---- pages -------------------------------------------------------------------------------

function tile(label, id) {
  return el("div", { class: "tile" }, el("dt", { text: label }), el("dd", { id, text: "–" }));
}
function setText(id, text) { const e = document.getElementById(id); if (e) e.textContent = text; }

function table(caption, heads, rows) {
  return el("div", { class: "scroll" }, el("table", {},
    el("caption", { class: "note", style: "text-align:left", text: caption }),
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", class: h.num ? "num" : "", text: h.label || h })))),
    el("tbody", {}, rows)));
}

function errorBox(e) {
  return el("p", { class: "error", role: "alert", text: e.status === 501 ? "Not available on this server: " + e.message : e.message });
}

const pages = {};

pages.overview = (view) => {
  view.append(
    el("h1", { text: "Overview" }),
    el("dl", { class: "tiles" }, tile("Requests/s", "t-req"), tile("Errors/s (5xx)", "t-err"),
      tile("4xx/s", "t-4xx"), tile("p50", "t-p50"), tile("p99", "t-p99"), tile("In", "t-in"),
      tile("Out", "t-out"), tile("Connections", "t-conns")));
  const charts = [
    chart("Requests per second", [
      { label: "requests", color: "var(--c1)", get: (p) => p.total.req },
      { label: "5xx", color: "var(--c2)", get: (p) => p.total.err }], (v) => fmtNum(v)),
    chart("Latency", [
      { label: "p50", color: "var(--c1)", get: (p) => p.total.p50 },
      { label: "p99", color: "var(--c4)", get: (p) => p.total.p99 }], fmtMs),
    chart("Bandwidth per second", [
      { label: "in", color: "var(--c3)", get: (p) => p.total.in },
      { label: "out", color: "var(--c1)", get: (p) => p.total.out }], fmtBytes),
  ];
  const listeners = el("div");
  const routes = el("div");
  const protos = el("div");
  view.append(el("div", { class: "charts" }, charts.map((c) => c.node)),
    el("h2", { text: "By listener" }), listeners, el("h2", { text: "By route" }), routes,
    el("h2", { text: "By protocol" }), protos);
  const rateTable = (caption, get, name, bytes, latency) => {
    const names = new Set();
    for (const p of last(5)) for (const k of Object.keys(get(p) || {})) names.add(k);
    const rows = [...names].sort().map((n) => {
      const f = (k) => avg(5, (p) => (get(p) || {})[n] && get(p)[n][k]);
      return el("tr", {}, el("th", { scope: "row", text: n }),
        el("td", { class: "num", text: fmtNum(f("req") || 0) }), el("td", { class: "num", text: fmtNum(f("err") || 0) }),
        el("td", { class: "num", text: fmtNum(f("4xx") || 0) }),
        latency && el("td", { class: "num", text: fmtMs(f("p50")) }),
        latency && el("td", { class: "num", text: fmtMs(f("p99")) }),
        bytes && el("td", { class: "num", text: fmtBytes(f("in") || 0) + "/s" }),
        bytes && el("td", { class: "num", text: fmtBytes(f("out") || 0) + "/s" }));
    });
    const heads = [name, { label: "req/s", num: 1 }, { label: "5xx/s", num: 1 }, { label: "4xx/s", num: 1 }];
    if (latency) heads.push({ label: "p50", num: 1 }, { label: "p99", num: 1 });
    if (bytes) heads.push({ label: "in", num: 1 }, { label: "out", num: 1 });
    return table(caption + " (average of the last 5 seconds)", heads, rows.length ? rows : el("tr", {}, el("td", { colSpan: heads.length, class: "note", text: "No requests in the last 5 seconds." })));
  };
  const tick = () => {
    const n = 5;
    setText("t-req", fmtNum(avg(n, (p) => p.total.req)));
    setText("t-err", fmtNum(avg(n, (p) => p.total.err)));
    setText("t-4xx", fmtNum(avg(n, (p) => p.total["4xx"])));
    setText("t-p50", fmtMs(avg(n, (p) => p.total.p50)));
    setText("t-p99", fmtMs(avg(n, (p) => p.total.p99)));
    setText("t-in", fmtBytes(avg(n, (p) => p.total.in)) + "/s");
    setText("t-out", fmtBytes(avg(n, (p) => p.total.out)) + "/s");
    setText("t-conns", fmtNum(avg(1, (p) => p.conns)));
    charts.forEach((c) => c.draw());
    morph(listeners, el("div", {}, rateTable("Listeners", (p) => p.listeners, "Listener", true, false)));
    morph(routes, el("div", {}, rateTable("Routes", (p) => p.routes, "Route", true, true)));
    morph(protos, el("div", {}, rateTable("Downstream protocols", (p) => p.protos, "Protocol", false, true)));
  };
  return tick;
};

pages.upstreams = (view) => {
  const body = el("div");
  const msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
  view.append(el("h1", { text: "Upstream groups" }), msg, body);
  let busy = false;
  const act = async (b, drain) => {
    const verb = drain ? "drain" : "undrain";
    try {
      await api("POST", "/upstreams/" + encodeURIComponent(b.group) + "/" + encodeURIComponent(b.address) + "/" + verb, {});
      msg.textContent = (drain ? "Draining " : "Undrained ") + b.address + " in " + b.group + ".";
    } catch (e) { msg.textContent = "Could not " + verb + " " + b.address + ": " + e.message; }
    refresh();
  };
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try {
      const list = await api("GET", "/upstreams");
      const groups = {};
      for (const b of list) (groups[b.group] = groups[b.group] || []).push(b);
      const out = [];
      for (const g of Object.keys(groups).sort()) {
        const rows = groups[g].map((b) => {
          const key = b.group + " " + b.address;
          const r = (k) => avg(5, (p) => p.upstreams && p.upstreams[key] ? p.upstreams[key][k] : 0);
          const state = b.draining ? ["draining", "warn"] : b.ejected ? ["ejected", "bad"] : b.healthy ? ["healthy", "ok"] : ["unhealthy", "bad"];
          const id = "act-" + g + "-" + b.address;
          return el("tr", { "data-address": b.address },
            el("th", { scope: "row", text: b.address }),
            el("td", {}, el("span", { class: "badge " + state[1], text: state[0] })),
            el("td", { class: "num", text: String(b.weight) }), el("td", { class: "num", text: String(b.in_flight) }),
            el("td", { class: "num", text: fmtNum(r("req") || 0) }), el("td", { class: "num", text: fmtNum(r("err") || 0) }),
            el("td", { class: "num", text: fmtMs(r("p50")) }), el("td", { class: "num", text: fmtMs(r("p99")) }),
            el("td", { class: "num", text: String(b.fails) }),
            el("td", {}, el("button", {
              id, type: "button", class: b.draining ? "" : "danger",
              "aria-label": (b.draining ? "Undrain " : "Drain ") + b.address + " in " + b.group,
              text: b.draining ? "Undrain" : "Drain", onclick: () => act(b, !b.draining),
            })));
        });
        out.push(el("h2", { text: g }), table("Backends of " + g + " (rates: last 5 seconds)",
          ["Server", "State", { label: "Weight", num: 1 }, { label: "In flight", num: 1 }, { label: "req/s", num: 1 },
            { label: "errors/s", num: 1 }, { label: "wait p50", num: 1 }, { label: "wait p99", num: 1 },
            { label: "fails (total)", num: 1 }, "Action"], rows));
      }
      morph(body, el("div", {}, out.length ? out : el("p", { class: "note", text: "No upstream groups are configured." })));
    } catch (e) { body.replaceChildren(errorBox(e)); }
    busy = false;
  };
  refresh();
  return refresh;
};

pages.cache = (view) => {
  const msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
  const results = el("div");
  view.append(el("h1", { text: "Cache" }),
    el("dl", { class: "tiles" }, tile("Hit ratio (1 min)", "c-hit"), tile("Memory tier", "c-mem"),
      tile("Disk tier", "c-disk"), tile("Evictions/s", "c-evict")));
  const ch = chart("Hit ratio", [{ label: "hits", color: "var(--c3)", get: (p) => Math.max(0, p.cache.hit_ratio) }], fmtPct);
  const kind = el("select", { id: "purge-kind", name: "kind" },
    el("option", { value: "urls", text: "URL" }), el("option", { value: "prefixes", text: "URL prefix" }),
    el("option", { value: "tags", text: "Tag" }), el("option", { value: "all", text: "Everything" }));
  const value = el("input", { id: "purge-value", name: "value", placeholder: "https://example.com/a.css" });
  const form = el("form", { class: "inline", "aria-labelledby": "purge-title" },
    el("label", {}, "Purge by", kind), el("label", {}, "Value", value),
    el("button", { type: "submit", class: "danger", text: "Purge" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const k = kind.value, v = value.value.trim();
    if (k !== "all" && !v) { msg.textContent = "Enter what to purge."; return; }
    if (!confirm(k === "all" ? "Purge every cached object?" : "Purge " + v + "?")) return;
    try {
      const res = await api("POST", "/cache/purge", k === "all" ? { all: true } : { [k]: [v] });
      msg.textContent = "Purged " + res.purged + " object(s).";
    } catch (e) { msg.textContent = "Purge failed: " + e.message; }
  });
  const top = el("div");
  view.append(el("div", { class: "charts" }, ch.node), el("h2", { text: "Requests by result" }), results,
    el("h2", { text: "Top keys" }), top,
    el("h2", { id: "purge-title", text: "Purge" }), form, msg);
  let status = null;
  const purgeURL = (u) => { kind.value = "urls"; value.value = u; value.focus(); };
  const load = () => Promise.all([
    api("GET", "/cache").then((s) => { status = s; }).catch((e) => { if (e.status !== 401) status = { error: e }; }),
    api("GET", "/cache/keys?limit=20").then((r) => {
      morph(top, el("div", {}, table("Objects in memory that served the most requests since they were stored",
        ["URL", { label: "hits", num: 1 }, { label: "size", num: 1 }, "Action"],
        r.keys.length ? r.keys.map((k) => el("tr", {}, el("th", { scope: "row", style: "overflow-wrap:anywhere", text: k.url }),
          el("td", { class: "num", text: String(k.hits) }), el("td", { class: "num", text: k.size < 0 ? "–" : fmtBytes(k.size) }),
          el("td", {}, el("button", { type: "button", text: "Purge…", "aria-label": "Purge " + k.url, onclick: () => purgeURL(k.url) }))))
          : el("tr", {}, el("td", { colSpan: 4, class: "note", text: "No object served from the cache yet." })))));
    }).catch(() => {}),
  ]);
  load();
  const tick = () => {
    let hits = 0, all = 0;
    for (const p of last(60)) {
      const r = p.cache.results || {};
      hits += (r.hit || 0) + (r.stale || 0) + (r.collapsed || 0) + (r.revalidated || 0);
      all += (r.hit || 0) + (r.stale || 0) + (r.collapsed || 0) + (r.revalidated || 0) + (r.miss || 0);
    }
    setText("c-hit", all ? fmtPct(hits / all) : "–");
    const p = last(1)[0];
    if (status && !status.error) {
      setText("c-mem", fmtBytes(status.memory_bytes) + " / " + fmtBytes(status.memory_capacity));
      setText("c-disk", status.disk_capacity ? fmtBytes(status.disk_bytes) + " / " + fmtBytes(status.disk_capacity) : "none");
    } else if (p) {
      setText("c-mem", fmtBytes(p.cache.memory)); setText("c-disk", fmtBytes(p.cache.disk));
    }
    setText("c-evict", fmtNum(avg(10, (q) => q.cache.evictions) || 0));
    ch.draw();
    const names = ["hit", "stale", "collapsed", "revalidated", "miss", "bypass"];
    morph(results, el("div", {}, table("Per second, average of the last 10 seconds", ["Result", { label: "req/s", num: 1 }],
      names.map((n) => el("tr", {}, el("th", { scope: "row", text: n }),
        el("td", { class: "num", text: fmtNum(avg(10, (q) => (q.cache.results || {})[n]) || 0) }))))));
    if (state.seq % 5 === 0) load();
  };
  return tick;
};

pages.workers = (view) => {
  const msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
  const body = el("div");
  view.append(el("h1", { text: "Workers" }), msg, body);
  let list = null;
  const load = async () => {
    try { list = await api("GET", "/workers"); } catch (e) { list = e; }
    render();
  };
  const deploy = async (name, input) => {
    const f = input.files && input.files[0];
    if (!f) { msg.textContent = "Choose a .wasm file to deploy to " + name + "."; return; }
    if (!confirm("Deploy " + f.name + " as the new version of " + name + "?")) return;
    try {
      const st = await api("PUT", "/workers/" + encodeURIComponent(name), await f.arrayBuffer(), "application/wasm");
      msg.textContent = "Deployed " + name + " version " + st.version + ".";
    } catch (e) { msg.textContent = "Deploy failed: " + e.message; }
    load();
  };
  const rollback = async (name) => {
    if (!confirm("Roll " + name + " back to its configured module?")) return;
    try {
      const st = await api("POST", "/workers/" + encodeURIComponent(name) + "/rollback", {});
      msg.textContent = "Rolled " + name + " back to version " + st.version + ".";
    } catch (e) { msg.textContent = "Rollback failed: " + e.message; }
    load();
  };
  const render = () => {
    if (list instanceof Error) { morph(body, el("div", {}, errorBox(list))); return; }
    if (!list) return;
    if (!list.length) { morph(body, el("div", {}, el("p", { class: "note", text: "No workers are configured." }))); return; }
    const rows = list.map((w) => {
      const r = (k) => avg(5, (p) => p.workers && p.workers[w.name] ? p.workers[w.name][k] : 0);
      const cur = last(1)[0];
      const now = cur && cur.workers && cur.workers[w.name] || {};
      const file = el("input", { type: "file", accept: ".wasm,application/wasm", id: "wasm-" + w.name, "aria-label": "Module for " + w.name });
      return el("tr", {}, el("th", { scope: "row", text: w.name }),
        el("td", { text: w.version + (w.source ? " (" + w.source + ")" : "") }),
        el("td", { text: new Date(w.deployed).toLocaleString() }),
        el("td", { class: "num", text: fmtNum(r("inv") || 0) }), el("td", { class: "num", text: fmtNum(r("err") || 0) }),
        el("td", { class: "num", text: fmtPct(r("cpu") || 0) }), el("td", { class: "num", text: String(now.objects || 0) }),
        el("td", { class: "num", text: String(w.instances) }), el("td", { class: "num", text: fmtBytes(now.memory || 0) }),
        el("td", {}, file, el("button", { type: "button", id: "deploy-" + w.name, text: "Deploy", onclick: () => deploy(w.name, document.getElementById("wasm-" + w.name)) }),
          " ", el("button", { type: "button", id: "rollback-" + w.name, class: "danger", text: "Roll back", "aria-label": "Roll back " + w.name, onclick: () => rollback(w.name) })));
    });
    morph(body, el("div", {}, table("Invocations, errors and CPU: last 5 seconds", ["Worker", "Version", "Deployed",
      { label: "inv/s", num: 1 }, { label: "errors/s", num: 1 }, { label: "CPU", num: 1 }, { label: "objects", num: 1 },
      { label: "instances", num: 1 }, { label: "memory", num: 1 }, "Deploy / roll back"], rows)));
  };
  load();
  return render;
};

pages.kv = (view) => {
  const msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
  const ns = el("select", { id: "kv-ns", name: "namespace" });
  const prefix = el("input", { id: "kv-prefix", name: "prefix", type: "search", placeholder: "prefix" });
  const keys = el("ul", { class: "keys", "aria-label": "Keys" });
  const more = el("button", { type: "button", hidden: true, text: "More keys" });
  const editor = el("div");
  let cursor = "";
  const search = el("form", { class: "inline", role: "search" },
    el("label", {}, "Namespace", ns), el("label", {}, "Key prefix", prefix),
    el("button", { type: "submit", class: "primary", text: "Search" }),
    el("button", { type: "button", text: "New key", onclick: () => edit(null) }));
  view.append(el("h1", { text: "KV browser" }), search, msg,
    el("div", { class: "kv" }, el("div", {}, keys, more), editor));
  const list = async (append) => {
    if (!ns.value) return;
    try {
      const q = "?prefix=" + encodeURIComponent(prefix.value) + "&limit=200" + (append ? "&cursor=" + encodeURIComponent(cursor) : "");
      const page = await api("GET", "/kv/" + encodeURIComponent(ns.value) + q);
      if (!append) keys.replaceChildren();
      for (const k of page.keys) {
        keys.append(el("li", {}, el("button", { type: "button", text: k.name, onclick: () => open(k.name) })));
      }
      if (!keys.children.length) keys.append(el("li", { class: "note", text: "No keys." }));
      cursor = page.cursor || "";
      more.hidden = page.list_complete;
    } catch (e) { msg.textContent = e.message; }
  };
  more.addEventListener("click", () => list(true));
  search.addEventListener("submit", (ev) => { ev.preventDefault(); list(false); });
  const open = async (key) => {
    try { edit(await api("GET", "/kv/" + encodeURIComponent(ns.value) + "/value?key=" + encodeURIComponent(key))); } catch (e) { msg.textContent = e.message; }
  };
  const edit = (entry) => {
    const isNew = !entry;
    const key = el("input", { id: "kv-key", name: "key", value: isNew ? "" : entry.key, readOnly: !isNew, required: true });
    const binary = entry && entry.value_base64 !== undefined && entry.value === undefined;
    const value = el("textarea", { id: "kv-value", name: "value", rows: 10, value: isNew ? "" : binary ? entry.value_base64 : entry.value });
    const meta = el("textarea", { id: "kv-meta", name: "metadata", rows: 3, value: entry && entry.metadata ? JSON.stringify(entry.metadata, null, 2) : "" });
    const ttl = el("input", { id: "kv-ttl", name: "ttl", type: "number", min: 0, value: 0 });
    const form = el("form", { "aria-labelledby": "kv-edit-title" },
      el("h2", { id: "kv-edit-title", text: isNew ? "New key" : "Key" }),
      el("div", { class: "field" }, el("label", { for: "kv-key", text: "Key" }), key),
      el("div", { class: "field" }, el("label", { for: "kv-value", text: binary ? "Value (binary, base64)" : "Value" }), value),
      entry ? el("p", { class: "note", text: entry.size + " bytes" + (entry.expiration ? ", expires " + new Date(entry.expiration).toLocaleString() : "") }) : null,
      el("div", { class: "field" }, el("label", { for: "kv-meta", text: "Metadata (JSON, optional)" }), meta),
      el("div", { class: "field" }, el("label", { for: "kv-ttl", text: "Time to live in seconds (0: none, else at least 60)" }), ttl),
      el("button", { type: "submit", class: "primary", text: "Save" }), " ",
      isNew ? null : el("button", { type: "button", class: "danger", text: "Delete", onclick: () => del(entry.key) }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { ttl_seconds: Number(ttl.value) || 0 };
      if (binary) body.value_base64 = value.value; else body.value = value.value;
      if (meta.value.trim()) {
        try { body.metadata = JSON.parse(meta.value); } catch (e) { msg.textContent = "Metadata is not valid JSON: " + e.message; return; }
      }
      if (!confirm("Save " + key.value + " in " + ns.value + "?")) return;
      try {
        await api("PUT", "/kv/" + encodeURIComponent(ns.value) + "/value?key=" + encodeURIComponent(key.value), body);
        msg.textContent = "Saved " + key.value + ".";
        list(false);
      } catch (e) { msg.textContent = "Save failed: " + e.message; }
    });
    editor.replaceChildren(form);
    (isNew ? key : value).focus();
  };
  const del = async (key) => {
    if (!confirm("Delete " + key + " from " + ns.value + "? This cannot be undone.")) return;
    try {
      await api("DELETE", "/kv/" + encodeURIComponent(ns.value) + "/value?key=" + encodeURIComponent(key), {});
      msg.textContent = "Deleted " + key + ".";
      editor.replaceChildren();
      list(false);
    } catch (e) { msg.textContent = "Delete failed: " + e.message; }
  };
  api("GET", "/kv").then((r) => {
    ns.replaceChildren(...r.namespaces.map((n) => el("option", { value: n, text: n })));
    if (!r.namespaces.length) msg.textContent = "No KV namespaces are bound by the configured workers.";
    else list(false);
  }).catch((e) => { msg.textContent = e.status === 501 ? "This server has no KV namespaces." : e.message; });
  ns.addEventListener("change", () => list(false));
  return null;
};

// generic renders a JSON value: objects as definition lists, lists of objects as tables.
function generic(v) {
  if (Array.isArray(v)) {
    if (!v.length) return el("span", { class: "note", text: "none" });
    if (typeof v[0] === "object" && v[0] !== null) {
      const cols = [...new Set(v.flatMap((o) => Object.keys(o)))];
      return table("", cols, v.map((o) => el("tr", {}, cols.map((c) => el("td", {}, cellValue(o[c]))))));
    }
    return el("span", { text: v.join(", ") });
  }
  if (typeof v === "object" && v !== null) {
    return el("dl", { class: "tiles" }, Object.entries(v).filter(([, x]) => typeof x !== "object" || x === null)
      .map(([k, x]) => el("div", { class: "tile" }, el("dt", { text: k }), el("dd", { style: "font-size:16px", text: String(x) }))));
  }
  return el("span", { text: String(v) });
}
function cellValue(x) {
  if (x === undefined || x === null) return "";
  if (typeof x === "object") return JSON.stringify(x);
  return String(x);
}

pages.cluster = (view) => {
  const body = el("div");
  view.append(el("h1", { text: "Cluster" }), body);
  let busy = false;
  const load = async () => {
    if (busy) return;
    busy = true;
    try {
      const st = await api("GET", "/cluster");
      const parts = [generic(st)];
      for (const [k, v] of Object.entries(st)) {
        if (Array.isArray(v)) parts.push(el("h2", { text: k }), generic(v));
      }
      body.replaceChildren(...parts);
    } catch (e) { body.replaceChildren(errorBox(e)); }
    busy = false;
  };
  load();
  return () => { if (state.seq % 5 === 0) load(); };
};

// errorLines maps the line numbers in a validation error ("file:LINE:COL: field: message",
// one per line) to their messages.
function errorLines(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    const m = /^(?:.*?):(\d+):(\d+): (.*)$/.exec(line);
    if (m) {
      const n = Number(m[1]);
      out.set(n, (out.has(n) ? out.get(n) + "\n" : "") + "column " + m[2] + ": " + m[3]);
    }
  }
  return out;
}

pages.config = (view) => {
  const msg = el("p", { class: "msg", role: "status", "aria-live": "polite" });
  const text = el("textarea", { id: "config-text", name: "config", rows: 18, spellcheck: false });
  const preview = el("pre", { class: "code", id: "config-lines", "aria-label": "Configuration with validation errors" });
  const errors = el("div", { role: "alert" });
  const show = (yaml, errText) => {
    const marks = errText ? errorLines(errText) : new Map();
    const lines = yaml.split("\n");
    preview.replaceChildren(...lines.flatMap((l, i) => {
      const n = i + 1;
      const line = el("span", { class: "ln" + (marks.has(n) ? " errline" : ""), "data-n": n, text: l || " " });
      return marks.has(n) ? [line, el("span", { class: "errmsg", text: "▲ " + marks.get(n) })] : [line];
    }));
    errors.replaceChildren(errText ? el("p", { class: "error", text: errText }) : el("p", { class: "ok", text: "Valid." }));
  };
  const validate = async () => {
    try {
      const r = await api("POST", "/config/validate", text.value, "application/yaml");
      show(text.value, r.valid ? "" : r.error);
      return r.valid;
    } catch (e) { msg.textContent = e.message; return false; }
  };
  const form = el("form", { "aria-labelledby": "config-title" },
    el("label", { for: "config-text", text: "Configuration (YAML)" }), text,
    el("p", { class: "inline" },
      el("button", { type: "button", id: "config-validate", class: "primary", text: "Validate", onclick: validate }), " ",
      el("button", { type: "submit", class: "danger", text: "Apply" }), " ",
      el("button", { type: "button", text: "Revert", onclick: () => load() })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!(await validate())) { msg.textContent = "Not applied: fix the errors shown below."; return; }
    if (!confirm("Apply this configuration now?")) return;
    try {
      await api("POST", "/config", text.value, "application/yaml");
      msg.textContent = "Applied.";
    } catch (e) { msg.textContent = "Not applied: " + e.message; show(text.value, e.message); }
  });
  view.append(el("h1", { id: "config-title", text: "Configuration" }), msg, form, el("h2", { text: "Validation" }), errors, preview);
  const load = async () => {
    try {
      const y = await api("GET", "/config");
      text.value = y;
      show(y, "");
      validate();
    } catch (e) { msg.textContent = e.message; }
  };
  load();
  return null;
};

// ---- routing -----------------------------------------------------------------------------

function render() {
  const page = (location.hash || "#overview").slice(1);
  const fn = pages[page] || pages.overview;
  state.page = pages[page] ? page : "overview";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === state.page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const view = $("#view");
  view.replaceChildren();
  const tick = fn(view);
  state.ticks = tick ? [tick] : [];
  if (tick) tick();
  document.title = $("h1", view).textContent + " · Verge";
}

async function probeCluster() {
  try {
    await api("GET", "/cluster");
    $("#nav-cluster").hidden = false;
  } catch (e) {
    $("#nav-cluster").hidden = true;
  }
}

window.addEventListener("hashchange", () => { render(); $("#view").focus(); });
window.addEventListener("resize", () => { for (const fn of state.ticks) fn(); });
document.addEventListener("DOMContentLoaded", async () => {
  setupLogin();
  try {
    const s = await api("GET", "/stats");
    addPoints(s);
  } catch (e) { /* 401 asks for the token; 501: no charts */ }
  render();
  probeCluster();
  startStream();
});
