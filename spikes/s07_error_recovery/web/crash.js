// Spike 7, client crash: a tabletop client that makes edits through an outbox, killed mid-edit by the harness.
//
// Query parameters: ws (the room server, through the harness's fault proxy), room, c (this client's id),
// n (edits to make), rate (edits a second), variant ("indexeddb": the outbox is an IndexedDB object store and an
// edit goes on the socket only once its write transaction completed; "memory": a JS Map; "none": no outbox, an
// edit is sent if the socket is up and is otherwise gone), phase ("edit": make the edits; "reopen": the page opened
// again on the same profile after the kill: read what the outbox kept, send it again, report when it is drained),
// durability (the IndexedDB transactions' durability hint), drain_timeout_ms.
//
// Every step is logged to the harness with a synchronous POST to /log that returns once the harness has recorded
// it: "made" before the outbox write, "handed" after it (and before the send), "acked" when the server's ack
// arrives. So the harness knows what the app accepted independently of the outbox it is testing.
"use strict";
(function () {
  var q = new URLSearchParams(location.search);
  var P = {
    ws: q.get("ws"),
    room: q.get("room") || "table-1",
    c: parseInt(q.get("c"), 10),
    n: parseInt(q.get("n") || "0", 10),
    rate: parseFloat(q.get("rate") || "50"),
    variant: q.get("variant") || "memory",
    phase: q.get("phase") || "edit",
    durability: q.get("durability") || "default",
    drainTimeoutMs: parseInt(q.get("drain_timeout_ms") || "20000", 10),
  };
  var T0 = performance.now();

  function log(stage, data) {
    var body = {stage: stage, c: P.c, phase: P.phase, variant: P.variant, at_ms: performance.now() - T0};
    for (var k in data || {}) body[k] = data[k];
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/log", false); // synchronous: the harness has it when this returns
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.send(JSON.stringify(body));
  }
  function fail(err) {
    try { log("error", {error: String((err && (err.stack || err.message)) || err)}); } catch (e) { /* the harness is gone */ }
  }
  window.addEventListener("error", function (e) { fail(e.error || e.message); });
  window.addEventListener("unhandledrejection", function (e) { fail(e.reason); });
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // -- outboxes: put before the send, remove on the ack, all() after a rejoin or a reopen --------------------
  function MemoryOutbox() { this.m = new Map(); }
  MemoryOutbox.prototype.put = function (msg) { this.m.set(msg.seq, msg); return Promise.resolve(); };
  MemoryOutbox.prototype.remove = function (seq) { this.m.delete(seq); return Promise.resolve(); };
  MemoryOutbox.prototype.all = function () {
    return Promise.resolve(Array.from(this.m.values()).sort(function (a, b) { return a.seq - b.seq; }));
  };

  function IdbOutbox(db, durability) { this.db = db; this.durability = durability; }
  IdbOutbox.open = function (name, durability) {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(name, 1);
      req.onupgradeneeded = function () { req.result.createObjectStore("outbox", {keyPath: "seq"}); };
      req.onsuccess = function () { resolve(new IdbOutbox(req.result, durability)); };
      req.onerror = function () { reject(req.error); };
      req.onblocked = function () { reject(new Error("indexedDB.open blocked")); };
    });
  };
  IdbOutbox.prototype._write = function (fn) {
    var tx = this.db.transaction("outbox", "readwrite", {durability: this.durability});
    fn(tx.objectStore("outbox"));
    return new Promise(function (resolve, reject) {
      tx.oncomplete = function () { resolve(); }; // committed: what "written" means here
      tx.onerror = function () { reject(tx.error); };
      tx.onabort = function () { reject(tx.error || new Error("transaction aborted")); };
    });
  };
  IdbOutbox.prototype.put = function (msg) { return this._write(function (s) { s.put(msg); }); };
  IdbOutbox.prototype.remove = function (seq) { return this._write(function (s) { s.delete(seq); }); };
  IdbOutbox.prototype.all = function () {
    var db = this.db;
    return new Promise(function (resolve, reject) {
      var req = db.transaction("outbox", "readonly").objectStore("outbox").getAll();
      req.onsuccess = function () { resolve(req.result.sort(function (a, b) { return a.seq - b.seq; })); };
      req.onerror = function () { reject(req.error); };
    });
  };

  var outbox = null;
  var pending = new Set(); // the seqs in the outbox, mirrored in memory
  var ws = null;
  var joined = false;
  var attempt = 0;
  var resent = 0;

  function send(msg) {
    if (ws && joined && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(msg)); return true; }
    return false;
  }

  function connect() {
    var s = new WebSocket(P.ws);
    ws = s;
    joined = false;
    s.onopen = function () { s.send(JSON.stringify({op: "join", room: P.room})); };
    s.onmessage = function (ev) { onMessage(JSON.parse(ev.data)).catch(fail); };
    s.onclose = function () {
      if (ws !== s) return;
      ws = null;
      joined = false;
      attempt += 1;
      log("closed", {attempt: attempt});
      // Exponential backoff with full jitter: 100 ms doubling to 1 s.
      setTimeout(connect, Math.random() * Math.min(1000, 100 * Math.pow(2, attempt)));
    };
  }

  async function onMessage(m) {
    if (m.op === "joined") {
      joined = true;
      attempt = 0;
      log("joined", {});
      if (outbox) {
        var left = await outbox.all(); // after a rejoin: everything not acknowledged goes again, oldest first
        for (var i = 0; i < left.length; i++) if (send(left[i])) resent += 1;
      }
    } else if (m.op === "ack" && m.c === P.c) {
      if (pending.has(m.seq)) {
        pending.delete(m.seq);
        log("acked", {seq: m.seq});
        await outbox.remove(m.seq);
      }
    } else if (m.op === "error") {
      log("server-error", {code: m.code, reason: m.reason});
    }
  }

  async function drained(timeoutMs) {
    var until = performance.now() + timeoutMs;
    while (!(joined && pending.size === 0)) {
      if (performance.now() > until) return false;
      await sleep(5);
    }
    return true;
  }

  async function edits() {
    var period = 1000 / P.rate;
    var start = performance.now();
    for (var seq = 1; seq <= P.n; seq++) {
      var wait = start + (seq - 1) * period - performance.now();
      if (wait > 0) await sleep(wait);
      var msg = {op: "broadcast", room: P.room, c: P.c, seq: seq, t: Date.now(), d: ""};
      log("made", {seq: seq});
      if (outbox) {
        pending.add(seq);
        await outbox.put(msg);
      }
      log("handed", {seq: seq});
      send(msg); // down: the outbox sends it after the rejoin; without one it is gone
    }
    log("edits-done", {});
    var ok = await drained(P.drainTimeoutMs);
    log("drained", {ok: ok, left: Array.from(pending), resent: resent});
  }

  async function reopen() {
    var t = performance.now();
    var kept = outbox ? await outbox.all() : [];
    kept.forEach(function (e) { pending.add(e.seq); });
    log("reopened", {kept: kept.map(function (e) { return e.seq; })});
    connect(); // the rejoin sends what the outbox kept
    var ok = await drained(P.drainTimeoutMs);
    log("drained", {ok: ok, left: Array.from(pending), resent: resent, resend_ms: performance.now() - t});
  }

  async function main() {
    if (P.variant === "indexeddb") outbox = await IdbOutbox.open("s07-outbox-" + P.c, P.durability);
    else if (P.variant === "memory") outbox = new MemoryOutbox();
    log("loaded", {userAgent: navigator.userAgent});
    if (P.phase === "reopen") {
      await reopen();
    } else {
      connect();
      var until = performance.now() + 10000;
      while (!joined) {
        if (performance.now() > until) throw new Error("could not join the room");
        await sleep(5);
      }
      await edits();
    }
  }
  main().catch(fail);
})();
