// The node's dashboard: polls /v1/status once a second and draws everything itself
// (tables, numbers, <canvas> line charts, the latest frame per stream); no library, no
// network beyond this node. The token (if the node needs one) comes from #token=... in the
// address or the form, is kept in localStorage and sent as a bearer header.
"use strict";

const HISTORY = 120;  // points kept per chart (two minutes at one poll a second)
const state = { token: null, rate: [], streams: {}, last: null, frameUrls: {} };

function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { localStorage.setItem("edgeinfer-token", decodeURIComponent(m[1])); }
  return localStorage.getItem("edgeinfer-token");
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function fmt(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { e.setAttribute(k, v); }
  if (text !== undefined) { e.textContent = text; }
  return e;
}

function push(series, value) {
  series.push(value);
  if (series.length > HISTORY) { series.shift(); }
}

// One or two line series on a canvas, each scaled to its own maximum, with the latest value.
function drawChart(canvas, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 18;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e3e6ea";
  ctx.beginPath(); ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  series.forEach((s, k) => {
    const vals = s.values.filter((v) => v !== null && !Number.isNaN(v));
    const max = Math.max(1e-9, ...vals) * 1.15;
    ctx.strokeStyle = s.colour; ctx.lineWidth = 2; ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = (i / (HISTORY - 1)) * w;
      const y = h - pad - ((v || 0) / max) * (h - 2 * pad);
      if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
    });
    ctx.stroke();
    ctx.fillStyle = s.colour; ctx.font = "12px system-ui";
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    ctx.fillText(s.label + " " + fmt(last, 1), 6 + k * 150, 13);
  });
}

function renderModels(models) {
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const m of models) {
    const tr = el("tr", { "data-model": m.name });
    tr.append(el("td", {}, m.name), el("td", { class: "state " + m.state }, m.state),
      el("td", { class: "task" }, m.task || "–"), el("td", { class: "requests" }, m.requests),
      el("td", {}, m.completed), el("td", {}, m.rejected), el("td", {}, m.failed),
      el("td", {}, m.queued), el("td", {}, fmt(m.run_ms_p50, 2)),
      el("td", {}, fmt(m.wait_ms_p50, 2)));
    body.append(tr);
    if (m.error) {
      const er = el("tr"); const td = el("td", { colspan: 10, class: "error" }, m.error);
      er.append(td); body.append(er);
    }
  }
}

async function refreshFrame(name, img) {
  try {
    const r = await fetch("/v1/streams/" + encodeURIComponent(name) + "/frame.jpg",
      { headers: headers(), cache: "no-store" });
    if (!r.ok) { return; }
    const url = URL.createObjectURL(await r.blob());
    if (state.frameUrls[name]) { URL.revokeObjectURL(state.frameUrls[name]); }
    state.frameUrls[name] = url; img.src = url;
  } catch (e) { /* the next poll tries again */ }
}

function renderStreams(streams) {
  const box = document.getElementById("streams");
  const names = Object.keys(streams).sort();
  if (!names.length) { return; }
  if (box.querySelector(".muted")) { box.replaceChildren(); }
  for (const name of names) {
    const s = streams[name];
    let card = box.querySelector('[data-stream="' + CSS.escape(name) + '"]');
    if (!card) {
      card = el("div", { class: "stream", "data-stream": name });
      card.append(el("h3", {}, name), el("img", { alt: "latest frame of " + name }),
        el("div", { class: "nums" }), el("canvas", { width: 320, height: 90 }));
      box.append(card);
      state.streams[name] = { fps: [], p50: [] };
    }
    const hist = state.streams[name];
    push(hist.fps, s.fps); push(hist.p50, s.latency_ms_p50);
    const nums = card.querySelector(".nums");
    nums.replaceChildren(
      el("span", {}, "fps "), el("b", { class: "fps" }, fmt(s.fps, 1)),
      el("span", {}, " p50 " + fmt(s.latency_ms_p50, 1) + " ms, p99 " +
        fmt(s.latency_ms_p99, 1) + " ms"),
      el("span", { class: "frames" }, "frames " + (s.frames ?? 0)),
      el("span", { class: "drops" }, "drops " + (s.drops ?? 0)),
      el("span", { class: "state" }, s.state || ""));
    drawChart(card.querySelector("canvas"), [
      { label: "fps", colour: "#2563eb", values: hist.fps },
      { label: "p50 ms", colour: "#d97706", values: hist.p50 }]);
    refreshFrame(name, card.querySelector("img"));
  }
}

function renderUplink(uplink) {
  const section = document.getElementById("uplink-section");
  if (!uplink) { section.hidden = true; return; }
  section.hidden = false;
  const dl = document.getElementById("uplink");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(uplink)) { dl.append(el("dt", {}, k), el("dd", {}, v)); }
}

async function poll() {
  const msg = document.getElementById("message");
  try {
    const r = await fetch("/v1/status", { headers: headers(), cache: "no-store" });
    if (r.status === 401) { msg.textContent = "this node needs a token: enter it above"; return; }
    if (!r.ok) { msg.textContent = "status: HTTP " + r.status; return; }
    const s = await r.json();
    msg.textContent = "";
    const now = performance.now();
    const total = s.models.reduce((a, m) => a + (m.requests || 0), 0);
    let rate = 0;
    if (state.last) { rate = (total - state.last.total) / ((now - state.last.t) / 1000); }
    state.last = { total, t: now };
    push(state.rate, rate);
    document.getElementById("node-name").textContent = s.node.name;
    const ready = document.getElementById("ready");
    ready.textContent = s.node.ready ? "ready" : "not ready";
    ready.className = "badge " + (s.node.ready ? "ok" : "bad");
    document.getElementById("total-requests").textContent = total;
    document.getElementById("request-rate").textContent = fmt(rate, 1);
    document.getElementById("uptime").textContent = fmt(s.node.uptime_s, 0);
    renderModels(s.models);
    renderStreams(s.streams || {});
    renderUplink(s.uplink);
    drawChart(document.getElementById("rate-chart"),
      [{ label: "req/s", colour: "#2563eb", values: state.rate }]);
  } catch (e) {
    msg.textContent = "node unreachable: " + e;
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = document.getElementById("token").value || null;
  if (state.token) { localStorage.setItem("edgeinfer-token", state.token); }
  poll();
});
state.token = readToken();
poll();
setInterval(poll, 1000);
