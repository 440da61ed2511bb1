// Spike 10's DevTools page: WebSocket round trips marked on a custom DevTools track, plus web-vitals.
// performance.measure(name, {start, end, detail: {devtools: {dataType: "track-entry", track: "Tabletop"}}}) puts each
// round trip on its own track in the Performance panel (Chrome DevTools' extensibility API); the harness reads the
// measures back over the DevTools protocol.
import { onCLS, onFCP, onINP, onLCP, onTTFB } from "/web-vitals.js";

const TRACK = "Tabletop";
const TRACK_GROUP = "Realtime spikes";
const vitals = {};
const vitalsLog = [];
const errors = [];

function report(metric) {
  vitals[metric.name] = { value: metric.value, rating: metric.rating, navigationType: metric.navigationType, reports: (vitals[metric.name]?.reports || 0) + 1 };
  vitalsLog.push([metric.name, metric.value, performance.now()]);
}

const opts = { reportAllChanges: true };
onTTFB(report, opts);
onFCP(report, opts);
onLCP(report, opts);
onCLS(report, opts);
onINP(report, { reportAllChanges: true, durationThreshold: 16 });

const status = document.getElementById("status");
let clicks = 0;
document.getElementById("poke").addEventListener("click", () => {
  clicks += 1;
  status.textContent = `clicked ${clicks} time(s)`;
});

function nextEcho(ws, seq) {
  return new Promise((resolve, reject) => {
    const onMessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.op === "echo" && msg.seq === seq) { cleanup(); resolve(msg); }
    };
    const onClose = () => { cleanup(); reject(new Error(`connection closed before echo ${seq}`)); };
    const cleanup = () => { ws.removeEventListener("message", onMessage); ws.removeEventListener("close", onClose); };
    ws.addEventListener("message", onMessage);
    ws.addEventListener("close", onClose);
  });
}

async function runRoundTrips(url, n, payloadBytes) {
  const t0 = performance.now();
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error(`cannot open ${url}`)); });
  const opened = performance.now();
  performance.measure("ws connect", { start: t0, end: opened, detail: { devtools: {
    dataType: "track-entry", track: TRACK, trackGroup: TRACK_GROUP, color: "tertiary", tooltipText: "WebSocket handshake",
    properties: [["url", url]] } } });
  const payload = "x".repeat(payloadBytes);
  const rtts = [];
  let failed = null;
  for (let seq = 0; seq < n; seq++) {
    const start = performance.now();
    const echo = nextEcho(ws, seq);
    ws.send(JSON.stringify({ op: "echo", seq, t: Date.now() * 1e6, c: 1, d: payload }));
    try { await echo; } catch (e) { failed = String(e); break; }
    const end = performance.now();
    performance.measure(`echo ${seq}`, { start, end, detail: { devtools: {
      dataType: "track-entry", track: TRACK, trackGroup: TRACK_GROUP, color: "primary",
      tooltipText: `echo ${seq}: ${(end - start).toFixed(3)} ms`,
      properties: [["seq", String(seq)], ["payload bytes", String(payloadBytes)]] } } });
    rtts.push(end - start);
  }
  ws.close();
  status.textContent = `${rtts.length} of ${n} round trips measured`;
  return { sent: n, received: rtts.length, rtts, failed, connect_ms: opened - t0 };
}

window.addEventListener("error", (e) => errors.push(String(e.message || e)));
window.__devtools = { ready: true, vitals, vitalsLog, errors, runRoundTrips, clicks: () => clicks };
status.textContent = "ready";
