// Helpers every view shares: JSON API calls, DOM building, formatting, charts, confirmation.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, body) {
  const init = body === undefined
    ? { headers: { Accept: "application/json" } }
    : { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body) };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "NETWORK", `the console's server did not answer (${err.message})`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, data.code || `HTTP_${response.status}`, data.error || response.statusText);
  }
  return data;
}

// h("td", {class: "num"}, "12") -> <td class="num">12</td>; children: strings, nodes, arrays, null.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function show(root, ...children) {
  root.replaceChildren();
  append(root, children);
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

export function num(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? integer.format(value) : decimal.format(value);
}

export function rate(value) {
  if (value === null || value === undefined) return "–";
  return value >= 100 ? integer.format(value) : decimal.format(value);
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${decimal.format(s / 3600)} h`;
}

export function badge(state) {
  const text = String(state || "UNKNOWN").toUpperCase();
  return h("span", { class: `badge ${text}`, "data-state": text }, text);
}

export function processState(p) {
  return p.stopped ? "STOPPED" : p.stale ? "STALE" : "LIVE";
}

export function link(href, text) {
  return h("a", { href }, text);
}

export function groupHref(id) {
  return `/groups/${encodeURIComponent(id)}`;
}

// columns: [{label, num?, cell(row) -> node|string, key?}]
export function table(columns, rows, { empty = "Nothing here.", rowClass, id } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", { class: rowClass ? rowClass(r) : null },
      columns.map((c) => h("td", { class: c.num ? "num" : c.wrap ? "wrap" : null, "data-col": c.key || null },
        c.cell(r)))))));
}

export function card(label, value, sub, key) {
  return h("div", { class: "card", "data-card": key || null },
    h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

export function alert(kind, message, code) {
  return h("div", { class: `alert ${kind}`, role: kind === "error" ? "alert" : "status" },
    code ? h("span", { class: "code" }, code) : null, message);
}

// A line chart as inline SVG. t: unix seconds; lines: [{label, values, cls}].
export function lineChart(t, lines, { height = 150, format = num, title } = {}) {
  const W = 640, H = height, L = 44, R = 8, T = 8, B = 20;
  const all = lines.flatMap((l) => l.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...all);
  const n = t.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title || "chart" });
  for (const f of [0, 0.5, 1]) {
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    svg.append(s("text", { x: L - 4, y: y(max * f) + 3, "text-anchor": "end" }, format(max * f)));
  }
  if (n > 1) {
    const span = t[n - 1] - t[0];
    svg.append(s("text", { x: L, y: H - 4 }, `−${duration(span)}`));
    svg.append(s("text", { x: W - R, y: H - 4, "text-anchor": "end" }, "now"));
  }
  for (const line of lines) {
    const pts = line.values.map((v, i) => (v === null || v === undefined ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`))
      .filter(Boolean);
    if (pts.length === 1) pts.push(pts[0].replace(/^[\d.]+/, (W - R).toString()));
    if (pts.length) svg.append(s("polyline", { class: `line ${line.cls}`, points: pts.join(" ") }));
  }
  const legend = h("div", { class: "legend" }, lines.map((l) => h("span", {}, h("i", { class: l.cls }), l.label,
    " ", h("b", { class: "num" }, format(lastOf(l.values))))));
  return h("div", { class: "chart" }, title ? h("h2", {}, title) : null, svg, legend);
}

function lastOf(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

// Vertical bars for a small distribution: items [{label, value}].
export function barChart(items, { title } = {}) {
  const W = 320, H = 120, B = 18, T = 14;
  const max = Math.max(1, ...items.map((i) => i.value));
  const w = (W - 10) / Math.max(1, items.length);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "bars", role: "img", "aria-label": title || "bars" });
  items.forEach((item, i) => {
    const bh = ((H - B - T) * item.value) / max;
    svg.append(s("rect", { x: 5 + i * w + 4, y: H - B - bh, width: w - 8, height: bh }));
    svg.append(s("text", { x: 5 + i * w + w / 2, y: H - 5, "text-anchor": "middle" }, item.label));
    svg.append(s("text", { x: 5 + i * w + w / 2, y: H - B - bh - 3, "text-anchor": "middle" }, num(item.value)));
  });
  return h("div", { class: "chart" }, title ? h("h2", {}, title) : null, svg);
}

// The confirmation every admin action goes through: resolves true when confirmed.
export function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// Call `load` now and every `ms` while the page is open; `load` draws what it fetched.
export function every(ms, load) {
  let timer = null;
  const tick = async () => {
    try {
      await load();
    } finally {
      timer = setTimeout(tick, ms);
    }
  };
  return tick();
}

export function readOnly() {
  return document.body.dataset.readOnly === "true";
}

// A live area: refreshed content whose load errors are shown in place, not thrown.
export function liveArea(root, ms, loadAndDraw) {
  return every(ms, async () => {
    try {
      await loadAndDraw();
    } catch (err) {
      show(root, alert("error", err.message, err.code));
    }
  });
}
