// The custom dashboard's page: snapshots over SSE (/events), one canvas chart per signal, the last 60 s.
// No chart library: axes, ticks, lines and legends are drawn with the canvas 2D API.
(function () {
  "use strict";
  var WINDOW_S = 60;
  var COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#975a16", "#319795", "#e53e3e"];
  var snaps = [];
  var state = {received: 0, frames: 0, last: null, errors: [], firstT: null, lastT: null};
  state.spanS = function () { return state.firstT === null ? 0 : state.lastT - state.firstT; };
  window.__dashboard = state;

  function niceStep(range, ticks) {
    var raw = range / Math.max(1, ticks);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "-";
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    if (a === 0) return "0";
    return v.toPrecision(2);
  }

  // series: [{name, color, points: [[t_s, value|null], ...]}]
  function drawChart(canvas, unit, series, nowT) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var left = 52, right = 8, top = 18, bottom = 30;
    var pw = w - left - right, ph = h - top - bottom;
    var ymax = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) { if (p[1] !== null && isFinite(p[1]) && p[1] > ymax) ymax = p[1]; });
    });
    if (ymax <= 0) ymax = 1;
    var step = niceStep(ymax, 4);
    ymax = Math.ceil(ymax / step) * step;
    var x = function (t) { return left + pw * (1 - (nowT - t) / WINDOW_S); };
    var y = function (v) { return top + ph * (1 - v / ymax); };
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#e2e8f0";
    ctx.fillStyle = "#4a5568";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var v = 0; v <= ymax + step / 2; v += step) {
      ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(left + pw, y(v)); ctx.stroke();
      ctx.fillText(fmt(v), left - 4, y(v));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (var s = 0; s <= WINDOW_S; s += 10) {
      var xs = x(nowT - s);
      ctx.beginPath(); ctx.moveTo(xs, top); ctx.lineTo(xs, top + ph); ctx.stroke();
      ctx.fillText(s === 0 ? "now" : "-" + s, xs, top + ph + 3);
    }
    ctx.strokeStyle = "#718096";
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, top + ph); ctx.lineTo(left + pw, top + ph); ctx.stroke();
    // axis labels: the unit on y, seconds ago on x
    ctx.fillStyle = "#2d3748";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(unit, 2, 2);
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.fillText("time (s ago)", left + pw, h - 1);
    // lines
    ctx.save();
    ctx.beginPath(); ctx.rect(left, top - 1, pw, ph + 2); ctx.clip();
    series.forEach(function (sr) {
      ctx.strokeStyle = sr.color;
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      var pen = false;
      sr.points.forEach(function (p) {
        if (p[1] === null || !isFinite(p[1])) { pen = false; return; }
        if (pen) ctx.lineTo(x(p[0]), y(p[1])); else ctx.moveTo(x(p[0]), y(p[1]));
        pen = true;
      });
      ctx.stroke();
    });
    ctx.restore();
    // legend
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    var lx = left + 6;
    series.forEach(function (sr) {
      ctx.fillStyle = sr.color;
      ctx.fillRect(lx, 4, 10, 3);
      ctx.fillStyle = "#2d3748";
      ctx.fillText(sr.name, lx + 13, 0);
      lx += 20 + ctx.measureText(sr.name).width;
    });
  }

  function pick(key) {
    return snaps.map(function (s) { return [s.t_s, s.up && s[key] !== undefined ? s[key] : null]; });
  }

  function byLabel(key) {
    var names = {};
    snaps.forEach(function (s) { if (s[key]) Object.keys(s[key]).forEach(function (k) { names[k] = true; }); });
    return Object.keys(names).sort().map(function (name, i) {
      return {name: name, color: COLORS[i % COLORS.length], points: snaps.map(function (s) {
        return [s.t_s, s.up && s[key] ? (s[key][name] || 0) : null];
      })};
    });
  }

  function scaled(key, factor) {
    return snaps.map(function (s) { var v = s.up ? s[key] : null; return [s.t_s, v === null || v === undefined ? null : v * factor]; });
  }

  function text(id, s) { document.getElementById(id).textContent = s; }

  function render() {
    if (!snaps.length) return;
    var nowT = snaps[snaps.length - 1].t_s;
    var last = snaps[snaps.length - 1];
    drawChart(document.getElementById("c-connections"), "connections", [{name: "open", color: COLORS[0], points: pick("connections")}], nowT);
    var ops = byLabel("messages_per_s");
    ops.push({name: "all", color: "#1a202c", points: pick("messages_per_s_total")});
    drawChart(document.getElementById("c-messages"), "messages/s", ops, nowT);
    var kinds = byLabel("errors_per_s");
    kinds.push({name: "all", color: "#c53030", points: pick("errors_per_s_total")});
    drawChart(document.getElementById("c-errors"), "errors/s", kinds, nowT);
    drawChart(document.getElementById("c-latency"), "ms", [
      {name: "p50", color: COLORS[0], points: pick("p50_ms")},
      {name: "p99", color: COLORS[1], points: pick("p99_ms")}], nowT);
    drawChart(document.getElementById("c-rss"), "RSS MiB", [{name: "resident memory", color: COLORS[4], points: scaled("rss_bytes", 1 / 1048576)}], nowT);
    drawChart(document.getElementById("c-cpu"), "CPU %", [{name: "CPU (100% = one core)", color: COLORS[1], points: scaled("cpu_cores", 100)}], nowT);
    drawChart(document.getElementById("c-fds"), "open fds", [{name: "file descriptors", color: COLORS[2], points: pick("open_fds")}], nowT);
    if (last.up) {
      text("now-connections", "now: " + fmt(last.connections) + " open, " + fmt(last.opened_per_s) + " opened/s");
      text("now-messages", "now: " + fmt(last.messages_per_s_total) + " msg/s, " + fmt(last.bytes_per_s) + " B/s");
      text("now-errors", "now: " + fmt(last.errors_per_s_total) + " errors/s");
      text("now-latency", "now: p50 " + fmt(last.p50_ms) + " ms, p99 " + fmt(last.p99_ms) + " ms over " + Math.round(last.latency_count) + " messages in the last " + fmt(last.latency_window_s) + " s");
      text("now-rss", "RSS " + fmt(last.rss_bytes / 1048576) + " MiB");
      text("now-cpu", "CPU " + fmt(last.cpu_cores * 100) + " %");
      text("now-fds", fmt(last.open_fds) + " open fds");
    }
    state.frames += 1;
  }

  var status = document.getElementById("status");
  var es = new EventSource("/events");
  es.addEventListener("hello", function (e) {
    var info = JSON.parse(e.data);
    text("source", "scraping " + info.metrics_url + " every " + info.interval_s + " s");
  });
  es.onmessage = function (e) {
    var snap = JSON.parse(e.data);
    state.received += 1;
    state.last = snap;
    if (state.firstT === null) state.firstT = snap.t_s;
    state.lastT = snap.t_s;
    snaps.push(snap);
    while (snaps.length && snaps[0].t_s < snap.t_s - WINDOW_S) snaps.shift();
    status.className = snap.up ? "" : "down";
    status.textContent = (snap.up ? "live" : "scrape failed: " + snap.error) + " | snapshots: " + state.received +
      " | last: " + new Date(snap.t_s * 1000).toISOString().slice(11, 19) + " UTC";
    requestAnimationFrame(render);
  };
  es.onerror = function () { status.className = "down"; status.textContent = "dashboard stream lost; reconnecting..."; };
  window.addEventListener("error", function (e) { state.errors.push(String(e.message || e)); });
})();
