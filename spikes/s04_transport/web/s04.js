// Spike 4's test page, served by a feed server at /static/s04.html, same origin as its /sse, /poll, /send and /ws.
//
// One step per load (its JSON in location.hash), two kinds:
// - "transport": open one transport for a fresh room, publish a batch and receive it, ask the harness to cut every
//   connection between this page and the server (GET {ctl}/cut: a fault proxy resets them, the server stays up),
//   publish a batch while the transport is down, wait for it to come back, publish a last batch live. The page
//   records raw facts only (what was published and acknowledged, what arrived and when, when the transport dropped
//   and came back); browsers.py counts losses and duplicates from them.
// - "probe": open `count` EventSources at once and see how many open, then whether one more fetch gets through:
//   the per-origin connection limit of HTTP/1.1 (6) against HTTP/2's multiplexing.
// The result goes to the top page (top.js) by postMessage; a step always reports, also when a phase times out.
//
// Resume points carry the server's epoch ("e" beside "n"; see harness/feed's protocol): EventSource sends back the
// "E-N" id it last saw by itself; the long-poll loop sends back the cursor it got, as it got it (text, no arithmetic);
// the WebSocket rejoin names {"after": N, "epoch": E}, N and E taken together from one message, so a restarted server
// answers with a reset (reason "epoch") instead of replaying its own numbers as if they came after the page's.
(function () {
  "use strict";
  var step = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  var T0 = performance.now();
  var partial = null; // what a step has so far, reported if its deadline passes

  function now() { return Math.round((performance.now() - T0) * 10) / 10; }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  async function waitFor(pred, ms) {
    var end = performance.now() + ms;
    while (!pred()) {
      if (performance.now() >= end) return false;
      await sleep(10);
    }
    return true;
  }
  function report(result) {
    document.getElementById("status").textContent = "done";
    parent.postMessage({s04: true, id: step.id, result: result}, "*");
  }
  function protocols() {
    var nav = performance.getEntriesByType("navigation")[0];
    return {page: nav ? nav.nextHopProtocol || null : null};
  }

  // -- the transport step ---------------------------------------------------------------------------------------
  async function runTransport() {
    var T = step.transport, R = step.room, K = step.batch;
    var st = {
      kind: "transport", transport: T, room: R, opened: false, t_open: null,
      acks: [], arrivals: [], ups: [], drops: [], joined: [], resets: [], errors: [], page_reopens: 0,
      last_event_id_at_drop: null, cut: null, timeouts: [], pos: null, epoch: null, rejoins: [],
    };
    partial = st;
    var lastEventId = null;

    function up() { st.ups.push(now()); }
    // The page's resume point: n and the epoch it was numbered in, always set together from one message (a server
    // without epochs sends no "e": then a plain n, as before).
    function at(m) {
      var e = typeof m.e === "string" && m.e ? m.e : null;
      st.pos = e === st.epoch && st.pos !== null ? Math.max(st.pos, m.n) : m.n;
      st.epoch = e;
    }
    function point() {
      var n = st.pos === null ? 0 : st.pos;
      return st.epoch === null ? String(n) : st.epoch + "-" + n;
    }
    function dispatch(m, via) {
      if (!m || typeof m !== "object") { st.errors.push({t: now(), what: "not an object", via: via}); return; }
      if (m.op === "joined") {
        st.joined.push({t: now(), n: typeof m.n === "number" ? m.n : null, e: m.e || null});
        if (!st.opened) { st.opened = true; st.t_open = now(); }
        if (typeof m.n === "number" && st.pos === null) at(m); // a resumed member's joined: the replay or reset follows
        up();
      } else if (m.op === "broadcast") {
        st.arrivals.push({seq: m.seq, n: typeof m.n === "number" ? m.n : null, c: m.c, t: now()});
        if (typeof m.n === "number") at(m);
      } else if (m.op === "reset") {
        st.resets.push({t: now(), n: m.n, reason: m.reason});
        if (typeof m.n === "number") { st.pos = null; at(m); }
      } else if (m.op === "error") {
        st.errors.push({t: now(), error: m.error});
      }
    }

    // Subscribers: each calls dispatch() with protocol messages and records its drops and returns.
    function openSse(query) {
      var es = new EventSource("/sse?room=" + encodeURIComponent(R) + (query || ""));
      es.addEventListener("joined", function (e) { dispatch(JSON.parse(e.data), "sse"); });
      es.addEventListener("reset", function (e) { dispatch(JSON.parse(e.data), "sse"); });
      es.onmessage = function (e) {
        lastEventId = e.lastEventId;
        dispatch(JSON.parse(e.data), "sse");
      };
      es.onerror = function () {
        st.drops.push({t: now(), ready_state: es.readyState});
        if (st.last_event_id_at_drop === null) st.last_event_id_at_drop = lastEventId;
        if (es.readyState === EventSource.CLOSED && !closed) {
          // The browser gave up (it does not retry): the page reopens, naming its position in the query.
          st.page_reopens += 1;
          setTimeout(function () { sub = openSse("&last_event_id=" + encodeURIComponent(point())); }, step.retry_ms);
        }
      };
      return {close: function () { es.close(); }};
    }

    function openPoll() {
      var stopped = false, cursor = null, ctrl = null, down = false;
      (async function loop() {
        while (!stopped) {
          var url = "/poll?room=" + encodeURIComponent(R) + (cursor === null ? "" : "&cursor=" + encodeURIComponent(cursor) + "&hold_s=" + step.hold_s);
          try {
            ctrl = new AbortController();
            var r = await fetch(url, {cache: "no-store", signal: ctrl.signal});
            var body = await r.json();
            if (!r.ok) {
              st.errors.push({t: now(), status: r.status, error: body && body.error});
              await sleep(step.retry_ms);
              continue;
            }
            if (cursor === null) {
              dispatch({op: "joined", room: R, n: typeof body.n === "number" ? body.n : body.cursor, e: body.e}, "poll");
            } else if (down) {
              up();
            }
            down = false;
            if (body.op === "reset") dispatch(body, "poll");
            (body.events || []).forEach(function (m) { dispatch(m, "poll"); });
            // The server's cursor ("E-N", or a plain number from a server without epochs), sent back as it came.
            if (typeof body.cursor === "number" || typeof body.cursor === "string") cursor = body.cursor;
          } catch (e) {
            if (stopped) break;
            st.drops.push({t: now(), error: String(e)});
            down = true;
            await sleep(step.retry_ms);
          }
        }
      })();
      return {close: function () { stopped = true; if (ctrl) ctrl.abort(); }};
    }

    function wsUrl() { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws"; }

    function openWs() {
      var ws, stopped = false;
      function connect() {
        ws = new WebSocket(wsUrl());
        ws.onopen = function () {
          var join = {op: "join", room: R};
          if (st.pos !== null) {
            join.after = st.pos;
            if (st.epoch !== null) join.epoch = st.epoch;
            st.rejoins.push({t: now(), after: join.after, epoch: join.epoch || null});
          }
          ws.send(JSON.stringify(join));
        };
        ws.onmessage = function (e) { dispatch(JSON.parse(e.data), "ws"); };
        ws.onclose = function (e) {
          if (stopped) return;
          st.drops.push({t: now(), code: e.code});
          setTimeout(connect, step.retry_ms); // the page's own reconnect (a WebSocket never retries by itself)
        };
      }
      connect();
      return {close: function () { stopped = true; ws.close(); }};
    }

    // Publishers: POST /send (SSE, long polling), or a WebSocket of its own that joined the room (its own copy of a
    // broadcast, or an ack, is the server's acknowledgement). Each returns {seq, n} once acknowledged.
    var C = 7; // the publisher's connection id in "c"
    function broadcast(seq) {
      return {op: "broadcast", room: R, seq: seq, t: Date.now() * 1e6, c: C, d: "s04-" + T + "-" + seq};
    }

    async function publishHttp(seq) {
      for (var attempt = 0; attempt < 3; attempt++) {
        try {
          var r = await fetch("/send", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(broadcast(seq)), cache: "no-store"});
          var body = await r.json();
          if (r.ok && body.op === "ack") return {seq: seq, n: body.n, attempts: attempt + 1};
          st.errors.push({t: now(), what: "send", status: r.status, error: body && body.error});
          return null;
        } catch (e) {
          st.errors.push({t: now(), what: "send", error: String(e)});
          await sleep(step.retry_ms);
        }
      }
      return null;
    }

    var pub = null; // {ws, ready: Promise, waiting: {seq: resolve}}
    function openPublisher() {
      var p = {waiting: {}};
      p.ready = new Promise(function (resolve, reject) {
        p.ws = new WebSocket(wsUrl());
        p.ws.onopen = function () { p.ws.send(JSON.stringify({op: "join", room: R})); };
        p.ws.onmessage = function (e) {
          var m = JSON.parse(e.data);
          if (m.op === "joined") resolve();
          else if ((m.op === "broadcast" || m.op === "ack") && m.c === C && p.waiting[m.seq]) {
            p.waiting[m.seq]({seq: m.seq, n: m.n});
            delete p.waiting[m.seq];
          }
        };
        p.ws.onclose = function () {
          if (pub === p) pub = null;
          reject(new Error("publisher closed"));
          // A broadcast sent just before the close event (the socket was already dead) is retried on a new one.
          Object.keys(p.waiting).forEach(function (k) { p.waiting[k]("closed"); });
          p.waiting = {};
        };
      });
      return p;
    }
    async function publishWs(seq) {
      for (var attempt = 0; attempt < 3; attempt++) {
        try {
          if (pub === null) pub = openPublisher();
          var p = pub;
          await p.ready;
          var got = new Promise(function (resolve) { p.waiting[seq] = resolve; });
          p.ws.send(JSON.stringify(broadcast(seq)));
          var ack = await Promise.race([got, sleep(step.deliver_ms).then(function () { return null; })]);
          if (ack === "closed") {
            st.errors.push({t: now(), what: "send", error: "publisher closed before seq " + seq + " was acknowledged: retried"});
            continue;
          }
          if (ack) { ack.attempts = attempt + 1; return ack; }
          st.errors.push({t: now(), what: "send", error: "no acknowledgement for seq " + seq});
          return null;
        } catch (e) {
          st.errors.push({t: now(), what: "send", error: String(e)});
          pub = null;
          await sleep(step.retry_ms);
        }
      }
      return null;
    }

    var publish = T === "ws" ? publishWs : publishHttp;
    async function batch(first, phase) {
      for (var seq = first; seq < first + K; seq++) {
        var ack = await publish(seq);
        if (ack) { ack.phase = phase; ack.t = now(); st.acks.push(ack); }
      }
    }
    function received(first, count) {
      var seen = {};
      st.arrivals.forEach(function (a) { seen[a.seq] = true; });
      for (var s = first; s < first + count; s++) if (!seen[s]) return false;
      return true;
    }

    var closed = false;
    var sub = T === "sse" ? openSse("") : T === "poll" ? openPoll() : openWs();
    try {
      if (!(await waitFor(function () { return st.opened; }, step.open_ms))) {
        st.timeouts.push("open");
        return st;
      }
      await batch(0, "before");
      if (!(await waitFor(function () { return received(0, K); }, step.deliver_ms))) st.timeouts.push("before");
      if (step.ctl) {
        var cut = {t_req: now()};
        try {
          var r = await fetch(step.ctl + "/cut?target=" + encodeURIComponent(step.target) + "&token=" + encodeURIComponent(step.token), {cache: "no-store"});
          cut.info = await r.json();
        } catch (e) {
          cut.error = String(e);
        }
        cut.t_done = now();
        st.cut = cut;
        var upsBefore = st.ups.length;
        await batch(K, "gap");
        // Back when the transport says so (joined again, or a poll answered after a failure), and the gap's
        // broadcasts are in; a transport that never saw the drop (its engine retried silently) skips the first.
        var back = await waitFor(function () {
          return (st.ups.length > upsBefore || st.drops.length === 0) && received(K, K);
        }, step.resume_ms);
        if (!back) st.timeouts.push("resume");
        await batch(2 * K, "after");
        if (!(await waitFor(function () { return received(0, 3 * K); }, step.deliver_ms))) st.timeouts.push("after");
      }
      await sleep(step.settle_ms); // a late duplicate would arrive now
      return st;
    } finally {
      closed = true;
      sub.close();
      if (pub) pub.ws.close();
      st.protocols = protocols();
      st.elapsed_ms = now();
    }
  }

  // -- the per-origin connection probe ---------------------------------------------------------------------------
  async function runProbe() {
    var N = step.count;
    var opened = [], joined = [], sources = [];
    for (var i = 0; i < N; i++) {
      opened.push(null);
      joined.push(null);
      (function (i) {
        var es = new EventSource("/sse?room=" + encodeURIComponent(step.room + "-" + i));
        es.onopen = function () { if (opened[i] === null) opened[i] = now(); };
        es.addEventListener("joined", function () { if (joined[i] === null) joined[i] = now(); });
        sources.push(es);
      })(i);
    }
    function count(a) { return a.filter(function (x) { return x !== null; }).length; }
    await waitFor(function () { return count(opened) === N; }, step.probe_ms);
    // One more request to the same origin while the streams hold their connections.
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, step.fetch_ms);
    var tf = now(), fetchOk = false, fetchMs = null, fetchError = null, fetchProtocol = null;
    var url = "/static/s04.html?probe=" + Math.random().toString(36).slice(2);
    try {
      var r = await fetch(url, {cache: "no-store", signal: ctrl.signal});
      await r.text();
      fetchOk = r.ok;
      fetchMs = Math.round(now() - tf);
      var entry = performance.getEntriesByName(new URL(url, location.href).href)[0];
      fetchProtocol = entry ? entry.nextHopProtocol || null : null;
    } catch (e) {
      fetchError = String(e);
    }
    clearTimeout(timer);
    var result = {
      kind: "probe", count: N, opened: count(opened), joined: count(joined), open_ms: opened, joined_ms: joined,
      fetch_ok: fetchOk, fetch_ms: fetchMs, fetch_error: fetchError, fetch_waited_ms: step.fetch_ms,
      fetch_protocol: fetchProtocol, protocols: protocols(), secure: location.protocol === "https:",
    };
    sources.forEach(function (es) { es.close(); });
    return result;
  }

  var deadline = new Promise(function (resolve) {
    setTimeout(function () { resolve({error: "the step's own deadline passed", deadline_ms: step.page_ms, partial: partial}); }, step.page_ms);
  });
  var work = step.kind === "probe" ? runProbe() : runTransport();
  Promise.race([work, deadline]).then(report, function (e) { report({error: String(e && e.stack || e)}); });
})();
