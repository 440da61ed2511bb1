// Spike 8, the offline app: it keeps the app's data kinds in one of the stores of stores.js and reads them back.
//
// Data kinds (what an offline tabletop client keeps): "board" (a snapshot of 100 tokens), "prefs" (user
// preferences), "outbox" (actions made offline), "map" (the map image, 256 KiB of bytes), "art" (8 token images of
// 4 KiB), "code" (the app's code, 20 KB of text), "note" (the shared note as a CRDT update blob: a header with a
// magic, a format version, the payload's length and its FNV-1a checksum, so a blob that does not decode is detected
// without Yjs) and "meta" (the schema/version marker, written last: data without it is not trusted).
// Every value is made from a generation number `gen`, so a reader knows exactly what it should find and tells
// present (equal), absent, corrupted (there but different or undecodable) and error (the read threw) apart.
//
// The harness drives the page with commands: the first one comes from the query string (?op=...), the next ones
// through the session's message channel while the page stays open. Each command's result goes back with
// harnessReport(). Commands: write, read, persist, boot (the app's start-up: check the marker, resync in full from
// /api/snapshot when it is missing or bad), corrupt (write a bad record under an app key), quota_write (write
// everything while a small quota is in force), upgrade_blocked (an IndexedDB upgrade while another document of
// the origin holds the database open), assets (load the map image and the app code through a service worker or the
// page's own Cache API code, with one of three invalidation strategies), hold (the holder iframe's part).
"use strict";
(function () {
  var SCHEMA = 1;
  var TOKENS = 100;
  var ART = 8;
  var MAP_BYTES = 256 * 1024;
  var ART_BYTES = 4 * 1024;
  var NOTE_BYTES = 2 * 1024;
  var NOTE_MAGIC = [0x53, 0x38, 0x4e, 0x54]; // "S8NT"
  var KINDS = ["board", "prefs", "outbox", "map", "art", "code", "note", "meta"];

  var q = new URLSearchParams(location.search);
  var opened = {}; // store kind -> the adapter the page opened (kept: the "clear while open" read reuses it)
  var held = {}; // store kind -> the in-memory copies the page keeps, as an app would
  var events = []; // things the engine told the page on its own: IndexedDB close/versionchange, storage events
  var T0 = performance.now();

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  function errInfo(e) { return {name: (e && e.name) || "Error", message: String((e && e.message) || e)}; }

  // -- deterministic values --------------------------------------------------------------------------------
  function prng(seed) {
    var x = (seed >>> 0) || 0x9e3779b9;
    return function () { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  }
  function bytes(n, seed) {
    var r = prng(seed), u = new Uint8Array(n);
    for (var i = 0; i < n; i += 4) { var v = r(); u[i] = v & 255; u[i + 1] = (v >>> 8) & 255; u[i + 2] = (v >>> 16) & 255; u[i + 3] = v >>> 24; }
    return u;
  }
  function fnv(u8) {
    var h = 0x811c9dc5;
    for (var i = 0; i < u8.length; i++) { h ^= u8[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h;
  }
  function board(gen) {
    var tokens = [];
    for (var i = 0; i < TOKENS; i++) {
      tokens.push({id: "t" + i, x: (i * 37 + gen) % 1000, y: (i * 53 + gen) % 800, color: ["red", "green", "blue", "gold"][i % 4], label: "Token " + i});
    }
    return {schema: SCHEMA, gen: gen, tokens: tokens};
  }
  function prefs(gen) { return {schema: SCHEMA, gen: gen, theme: "dark", zoom: 1.25, grid: true, name: "player-" + gen}; }
  function outbox(gen) {
    var actions = [];
    for (var i = 0; i < 20; i++) actions.push({id: "a" + gen + "-" + i, op: "move", token: "t" + i, x: i * 10, y: gen});
    return {schema: SCHEMA, gen: gen, actions: actions};
  }
  function code(gen) {
    var line = "function step" + gen + "(s) { return s + " + gen + "; }\n";
    return {schema: SCHEMA, gen: gen, version: "v" + gen, source: new Array(Math.ceil(20000 / line.length) + 1).join(line)};
  }
  // The note: "S8NT", format version 1, payload length (u32 LE), FNV-1a of the payload (u32 LE), the payload.
  function noteBlob(payload, version) {
    var out = new Uint8Array(13 + payload.length);
    out.set(NOTE_MAGIC, 0);
    out[4] = version === undefined ? 1 : version;
    var dv = new DataView(out.buffer);
    dv.setUint32(5, payload.length, true);
    dv.setUint32(9, fnv(payload), true);
    out.set(payload, 13);
    return out.buffer;
  }
  function noteCheck(buf) {
    // What a reader can tell about a note blob without Yjs: "ok", or why it does not decode.
    if (ArrayBuffer.isView(buf)) buf = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    if (!(buf instanceof ArrayBuffer)) return "not a blob";
    var u = new Uint8Array(buf);
    if (u.length < 13) return "shorter than its header";
    for (var i = 0; i < 4; i++) if (u[i] !== NOTE_MAGIC[i]) return "bad magic";
    if (u[4] > 1) return "format version from the future (" + u[4] + ")";
    var dv = new DataView(buf);
    var n = dv.getUint32(5, true);
    if (n !== u.length - 13) return "length mismatch";
    if (dv.getUint32(9, true) !== fnv(u.subarray(13))) return "checksum mismatch";
    return "ok";
  }
  function expected(gen) {
    var art = [];
    for (var i = 0; i < ART; i++) art.push(bytes(ART_BYTES, gen * 1000 + 100 + i));
    return {
      board: board(gen), prefs: prefs(gen), outbox: outbox(gen), code: code(gen),
      map: bytes(MAP_BYTES, gen * 1000 + 1), art: art, note: noteBlob(bytes(NOTE_BYTES, gen * 1000 + 2)),
      meta: {schema: SCHEMA, gen: gen, complete: true},
    };
  }
  function buf(u8) { return u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength); }

  // -- the stores -------------------------------------------------------------------------------------------
  var storesModule = null;
  async function openStoreFn() {
    if (typeof window.openStore === "function") return window.openStore;
    if (!storesModule) storesModule = await import("/stores.js");
    var f = storesModule.openStore || (storesModule.default && storesModule.default.openStore) || window.openStore;
    if (typeof f !== "function") throw new Error("stores.js exports no openStore");
    return f;
  }
  async function open(kind, fresh) {
    // One memory store per page: a fresh one would be empty by construction, which measures nothing.
    if ((!fresh || kind === "memory") && opened[kind]) return opened[kind];
    var s = await (await openStoreFn())(kind, {name: "s08app"});
    opened[kind] = s;
    watch(kind, s);
    return s;
  }
  function watch(kind, s) {
    // An IndexedDB connection the engine closes on its own (the origin's data cleared) fires "close".
    var db = s && (s.db || s._db || (s.raw && s.raw.db));
    try {
      if (db && typeof db.addEventListener === "function" && !db.__s08watched) {
        db.__s08watched = true;
        db.addEventListener("close", function () { events.push({store: kind, event: "idb close", at_ms: performance.now() - T0}); });
        db.addEventListener("versionchange", function () { events.push({store: kind, event: "idb versionchange", at_ms: performance.now() - T0}); });
      }
    } catch (e) { events.push({store: kind, event: "cannot watch the connection: " + errInfo(e).name}); }
  }
  window.addEventListener("storage", function (e) { events.push({event: "storage", key: e.key, at_ms: performance.now() - T0}); });

  // -- write and read every kind ------------------------------------------------------------------------------
  async function writeAll(s, gen, opts) {
    // The marker says "incomplete" first and "complete" last: a write cut in the middle (a quota error, a crash)
    // leaves a marker the next start does not trust.
    var x = expected(gen), out = {};
    var map = opts && opts.mapBytes ? bytes(opts.mapBytes, 77) : x.map;
    try { await s.put("meta", {schema: SCHEMA, gen: gen, complete: false}); } catch (e) { out.meta_start = {ok: false, error: errInfo(e)}; }
    var order = [
      ["board", function () { return s.put("board", x.board); }],
      ["prefs", function () { return s.put("prefs", x.prefs); }],
      ["outbox", function () { return s.put("outbox", x.outbox); }],
      ["map", opts && opts.mapBytes ? async function () {
        // A large map as tiles of 1 MiB, one write each (as a tiled map is kept): an engine checks its quota per write
        // against what is already used, so the error comes part way through, as it would for a real map.
        var tile = 1024 * 1024;
        out.map_tiles_written = 0;
        for (var off = 0, n = 0; off < map.length; off += tile, n++) {
          await s.put("map/tile/" + n, buf(map.subarray(off, off + tile)));
          out.map_tiles_written = n + 1;
        }
      } : function () { return s.put("map", buf(map)); }],
      ["art", function () { return s.putMany(x.art.map(function (a, i) { return ["art/" + i, buf(a)]; })); }],
      ["code", function () { return s.put("code", x.code); }],
      ["note", function () { return s.put("note", x.note); }],
    ];
    var failed = !!out.meta_start;
    for (var i = 0; i < order.length; i++) {
      var t = performance.now();
      try { await order[i][1](); out[order[i][0]] = {ok: true, ms: performance.now() - t}; }
      catch (e) { failed = true; out[order[i][0]] = {ok: false, error: errInfo(e)}; }
    }
    // The marker goes last, and only over a complete write: a reader that finds it trusts the rest.
    if (!failed) {
      try { await s.put("meta", x.meta); out.meta = {ok: true}; } catch (e) { out.meta = {ok: false, error: errInfo(e)}; }
    } else {
      out.meta = {ok: false, skipped: true};
    }
    held[s.kind || "?"] = {board: x.board, prefs: x.prefs, gen: gen};
    return out;
  }
  function sameBytes(v, u8) {
    if (!(v instanceof ArrayBuffer)) {
      if (v && v.buffer instanceof ArrayBuffer && typeof v.byteLength === "number") v = buf(v);
      else return false;
    }
    return v.byteLength === u8.length && fnv(new Uint8Array(v)) === fnv(u8);
  }
  function decodeJson(v) {
    // The app accepts a structured value or a JSON text (a store that keeps text); a text that does not parse is corrupt.
    if (typeof v === "string") return JSON.parse(v);
    return v;
  }
  async function getKind(s, key) {
    try { return {v: await s.get(key)}; } catch (e) { return {error: errInfo(e)}; }
  }
  async function readAll(s, gen) {
    // "stale": intact, but an earlier generation's value (the later write was lost, e.g. by a crash).
    var x = expected(gen), out = {}, errors = {}, older = [];
    for (var g = gen - 1; g >= 1; g--) older.push([g, expected(g)]);
    function judge(v, same, pick) {
      if (v === undefined || v === null) return "absent";
      if (same(v, pick(x))) return "present";
      for (var i = 0; i < older.length; i++) if (same(v, pick(older[i][1]))) return "stale";
      return "corrupted";
    }
    function sameJson(v, want) {
      try { return JSON.stringify(decodeJson(v)) === JSON.stringify(want); } catch (e) { return false; }
    }
    function sameNote(v, want) { return noteCheck(v) === "ok" && sameBytes(v, new Uint8Array(want)); }
    var jsonKinds = ["board", "prefs", "outbox", "code", "meta"];
    for (var i = 0; i < jsonKinds.length; i++) {
      var k = jsonKinds[i], r = await getKind(s, k);
      if (r.error) { out[k] = "error"; errors[k] = r.error; }
      else out[k] = judge(r.v, sameJson, (function (key) { return function (e) { return e[key]; }; })(k));
    }
    var m = await getKind(s, "map");
    if (m.error) { out.map = "error"; errors.map = m.error; } else out.map = judge(m.v, sameBytes, function (e) { return e.map; });
    var n = await getKind(s, "note");
    if (n.error) { out.note = "error"; errors.note = n.error; } else out.note = judge(n.v, sameNote, function (e) { return e.note; });
    var seen = {present: 0, absent: 0, corrupted: 0, error: 0, stale: 0};
    for (var j = 0; j < ART; j++) {
      var a = await getKind(s, "art/" + j);
      if (a.error) { seen.error++; errors.art = a.error; }
      else seen[judge(a.v, sameBytes, (function (jj) { return function (e) { return e.art[jj]; }; })(j))]++;
    }
    out.art = seen.present === ART ? "present" : seen.absent === ART ? "absent" : seen.stale === ART ? "stale" : seen.error ? "error" : seen.corrupted ? "corrupted" : "partial";
    var keys = null;
    try { keys = (await s.keys()).length; } catch (e) { errors.keys = errInfo(e); }
    return {kinds: out, errors: errors, keys: keys};
  }

  async function storageInfo() {
    var out = {persist: null, persisted: null, estimate: null};
    if (!navigator.storage) { out.error = "no navigator.storage"; return out; }
    try { out.persisted_before = await navigator.storage.persisted(); } catch (e) { out.persisted_before = errInfo(e); }
    // Firefox may show a permission prompt and leave persist() pending: a bounded wait, and "pending" if so.
    try {
      out.persist = await Promise.race([navigator.storage.persist(), sleep(2000).then(function () { return "pending after 2 s"; })]);
    } catch (e) { out.persist = errInfo(e); }
    try { out.persisted = await navigator.storage.persisted(); } catch (e) { out.persisted = errInfo(e); }
    try { var est = await navigator.storage.estimate(); out.estimate = {quota: est.quota, usage: est.usage}; } catch (e) { out.estimate = errInfo(e); }
    return out;
  }

  // -- the commands ------------------------------------------------------------------------------------------
  function storesOf(cmd) { return (cmd.stores || "").split(",").filter(Boolean); }

  var commands = {};
  commands.write = async function (cmd) {
    var gen = +cmd.gen || 1, out = {};
    for (var kind of storesOf(cmd)) {
      try { var s = await open(kind, true); out[kind] = {write: await writeAll(s, gen)}; }
      catch (e) { out[kind] = {open_error: errInfo(e)}; }
    }
    return {op: "write", gen: gen, stores: out, storage: cmd.persist ? await storageInfo() : null};
  };
  commands.read = async function (cmd) {
    // reuse: read through the adapter the page already has open (the "cleared while open" case); otherwise a fresh one.
    var gen = +cmd.gen || 1, out = {};
    for (var kind of storesOf(cmd)) {
      var r = {};
      try {
        var s = cmd.reuse && opened[kind] ? opened[kind] : await open(kind, true);
        r = await readAll(s, gen);
        r.handle = cmd.reuse && opened[kind] === s ? "reused" : "fresh";
      } catch (e) { r.open_error = errInfo(e); }
      var h = held[kind];
      r.held_in_memory = h ? JSON.stringify(h.board) === JSON.stringify(board(h.gen)) : false;
      out[kind] = r;
    }
    var ev = events.slice();
    return {op: "read", gen: gen, stores: out, events: ev, storage: cmd.persist ? await storageInfo() : null};
  };
  commands.persist = async function () { return {op: "persist", storage: await storageInfo()}; };

  // boot: the app's start-up. Check the marker and every record; a missing marker or a record that does not decode
  // means a full resync from the server (GET /api/snapshot), which is then written back.
  async function check(s) {
    var problems = [];
    var meta = await getKind(s, "meta");
    if (meta.error) problems.push("meta: read failed: " + meta.error.name);
    else if (meta.v === undefined || meta.v === null) problems.push("meta: missing");
    else {
      var m;
      try { m = decodeJson(meta.v); } catch (e) { m = null; problems.push("meta: does not parse"); }
      if (m && m.schema > SCHEMA) problems.push("meta: schema " + m.schema + " from the future");
      else if (m && m.complete !== true) problems.push("meta: incomplete write");
    }
    var b = await getKind(s, "board");
    if (b.error) problems.push("board: read failed: " + b.error.name);
    else if (b.v === undefined || b.v === null) problems.push("board: missing");
    else {
      try {
        var bv = decodeJson(b.v);
        if (!bv || !Array.isArray(bv.tokens)) problems.push("board: no token list");
        else if (bv.schema > SCHEMA) problems.push("board: schema " + bv.schema + " from the future");
      } catch (e) { problems.push("board: does not parse (" + e.name + ")"); }
    }
    var n = await getKind(s, "note");
    if (n.error) problems.push("note: read failed: " + n.error.name);
    else if (n.v === undefined || n.v === null) problems.push("note: missing");
    else { var c = noteCheck(n.v); if (c !== "ok") problems.push("note: " + c); }
    return problems;
  }
  function noteFromText(text) { return noteBlob(new TextEncoder().encode(text)); }
  async function resync(s, opts) {
    var t = performance.now();
    var res = await fetch("/api/snapshot", {cache: "no-store"});
    var body = await res.arrayBuffer();
    var fetchMs = performance.now() - t;
    var snap = JSON.parse(new TextDecoder().decode(body));
    var wrote = {}, failed = null, kept = [];
    // What the server cannot give back is kept when it still decodes: the outbox (actions not yet sent) and the
    // preferences. Everything else is the server's copy.
    var keep = {};
    for (var k of ["outbox", "prefs"]) {
      try {
        var v = decodeJson(await s.get(k));
        if (v && typeof v === "object" && !(v.schema > SCHEMA)) keep[k] = v;
      } catch (e) { /* unreadable: not kept */ }
    }
    try {
      if (opts && opts.clear) await s.clear();
      await s.put("meta", {schema: SCHEMA, gen: snap.gen, complete: false});
      await s.put("board", {schema: SCHEMA, gen: snap.gen, tokens: snap.tokens});
      await s.put("note", noteFromText(snap.note));
      for (var kk in keep) { await s.put(kk, keep[kk]); kept.push(kk); }
      await s.put("meta", {schema: SCHEMA, gen: snap.gen, complete: true, resynced: true});
      wrote = {board: true, note: true, meta: true};
    } catch (e) { failed = errInfo(e); }
    held[s.kind || "?"] = {board: {schema: SCHEMA, gen: snap.gen, tokens: snap.tokens}, gen: snap.gen, resynced: true};
    return {ms: performance.now() - t, fetch_ms: fetchMs, bytes: body.byteLength, wrote: wrote, kept: kept, write_error: failed};
  }
  async function stateOf(s) {
    // What the app holds after boot: the board's tokens and the note's text, for the harness to compare with its own.
    var b = decodeJson((await s.get("board")));
    var n = await s.get("note");
    if (n && ArrayBuffer.isView(n)) n = buf(n);
    var text = n instanceof ArrayBuffer && noteCheck(n) === "ok" ? new TextDecoder().decode(new Uint8Array(n, 13)) : null;
    return {gen: b && b.gen, tokens: b && b.tokens, note: text};
  }
  commands.boot = async function (cmd) {
    var kind = cmd.store || "indexeddb";
    var t = performance.now();
    var s = await open(kind, true);
    var problems = await check(s);
    var out = {op: "boot", store: kind, problems: problems, check_ms: performance.now() - t, resync: null};
    if (problems.length) out.resync = await resync(s, {clear: true});
    out.boot_ms = performance.now() - t;
    try { out.state = await stateOf(s); } catch (e) { out.state_error = errInfo(e); }
    out.problems_after = await check(s);
    return out;
  };
  // corrupt: bad records under the app's keys, written through the store as a buggy or older/newer app would.
  commands.corrupt = async function (cmd) {
    var kind = cmd.store || "indexeddb";
    var s = await open(kind, true);
    await writeAll(s, 1);
    var text = JSON.stringify(board(1));
    if (cmd.case === "truncated_json") await s.put("board", text.slice(0, Math.floor(text.length / 2)));
    else if (cmd.case === "future_schema") await s.put("meta", {schema: SCHEMA + 98, gen: 1, complete: true});
    else if (cmd.case === "bad_crdt") await s.put("note", buf(bytes(NOTE_BYTES, 4242)));
    else throw new Error("unknown corruption " + cmd.case);
    return {op: "corrupt", store: kind, case: cmd.case};
  };
  // quota_write: every kind written while the harness holds the origin to a small quota; a failure in the middle is
  // caught, and the app falls back to the resync of the essentials (board, note, marker), which are small.
  commands.quota_write = async function (cmd) {
    var kind = cmd.store || "indexeddb";
    var s = await open(kind, true);
    var before = null;
    try { before = await navigator.storage.estimate(); before = {quota: before.quota, usage: before.usage}; } catch (e) { /* not there */ }
    // The map at the size of a real high-resolution map, incompressible: past the small quota, in the middle of the
    // write (after the board, the preferences and the outbox, before the art, the code, the note and the marker).
    var write = await writeAll(s, 1, {mapBytes: +cmd.blob_bytes || 0});
    var quotaErrors = [];
    for (var k in write) if (write[k].error) quotaErrors.push(k + ": " + write[k].error.name);
    var problems = await check(s);
    var out = {op: "quota_write", store: kind, estimate_before: before, write: write, errors: quotaErrors, problems: problems, resync: null};
    if (quotaErrors.length || problems.length) out.resync = await resync(s, {clear: true});
    try { out.state = await stateOf(s); } catch (e) { out.state_error = errInfo(e); }
    out.problems_after = await check(s);
    return out;
  };

  // upgrade_blocked: an iframe of this page (another document of the origin, as another tab is) opens the app's own
  // database at version 1 and keeps it open without a versionchange handler; this page then opens it at version 2.
  function idbOpen(name, version, onblocked) {
    return new Promise(function (resolve, reject) {
      var req = indexedDB.open(name, version);
      req.onupgradeneeded = function (e) {
        var db = req.result;
        if (!db.objectStoreNames.contains("records")) db.createObjectStore("records");
        if (e.newVersion >= 2 && !db.objectStoreNames.contains("records2")) db.createObjectStore("records2");
      };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { reject(req.error); };
      req.onblocked = function (e) { if (onblocked) onblocked(e); };
    });
  }
  commands.hold = async function (cmd) {
    var db = await idbOpen(cmd.db, 1);
    window.__heldDb = db;
    db.onversionchange = function () { window.parent.postMessage({s08: "holder saw versionchange"}, "*"); };
    return {op: "hold", version: db.version};
  };
  commands.upgrade_blocked = async function (cmd) {
    var name = "s08-upgrade-" + (cmd.tag || "x");
    var seen = [];
    window.addEventListener("message", function (e) { if (e.data && e.data.s08) seen.push(e.data.s08); });
    var frame = document.createElement("iframe");
    var ready = new Promise(function (resolve) {
      window.addEventListener("message", function m(e) { if (e.data && e.data.s08held) { window.removeEventListener("message", m); resolve(e.data); } });
    });
    frame.src = location.pathname + "?op=hold&db=" + encodeURIComponent(name) + "&frame=1";
    document.body.appendChild(frame);
    await Promise.race([ready, sleep(5000)]);
    var blocked = 0, t = performance.now(), blockedAt = null;
    var opening = idbOpen(name, 2, function () {
      blocked++;
      if (blockedAt === null) blockedAt = performance.now() - t;
      // Handled: the app tells the other tab to let go (here: remove the holder document), then resyncs in full.
      frame.remove();
    });
    var db = await Promise.race([opening, sleep(8000).then(function () { return null; })]);
    var out = {op: "upgrade_blocked", blocked_events: blocked, blocked_after_ms: blockedAt, holder_messages: seen,
      upgraded: !!db, upgraded_version: db ? db.version : null, upgrade_ms: performance.now() - t, resync: null};
    if (db) {
      db.close();
      if (blocked) {
        var s = await open(cmd.store || "indexeddb", true);
        out.resync = await resync(s, {clear: true});
        try { out.state = await stateOf(s); } catch (e) { out.state_error = errInfo(e); }
      }
    }
    return out;
  };

  // -- assets: the map image and the app code through a strategy (service worker, or the page's own Cache API code)
  async function swRegister(strategy) {
    if (!("serviceWorker" in navigator)) throw Object.assign(new Error("navigator.serviceWorker is not there"), {name: "NotSupported"});
    var scope = "/s/" + strategy + "/";
    var reg = await navigator.serviceWorker.register("/sw.js?strategy=" + strategy, {scope: scope});
    return reg;
  }
  async function timedFetch(url) {
    var t = performance.now();
    var res = await fetch(url);
    var body = new Uint8Array(await res.arrayBuffer());
    var ms = performance.now() - t;
    var head = new TextDecoder().decode(body.subarray(0, Math.min(32, body.length))).split("\n")[0];
    return {ms: ms, status: res.status, bytes: body.length, version: head, via: res.headers.get("X-S08-Via")};
  }
  commands.assets = async function (cmd) {
    // The page is at /s/<strategy>/app.html, in the worker's scope. mode "sw": its fetches of /s/<strategy>/asset/*
    // go through the worker once it controls the page; mode "page": the page runs the same strategy code itself.
    var strategy = cmd.strategy, mode = cmd.mode || "sw";
    var out = {op: "assets", strategy: strategy, mode: mode, controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller)};
    var t = performance.now();
    try {
      if (mode === "sw") {
        var claimed = new Promise(function (r) { navigator.serviceWorker.addEventListener("controllerchange", r); });
        var reg = await swRegister(strategy);
        out.registered = true;
        if (!navigator.serviceWorker.controller && cmd.wait_control) {
          // First load: wait until the worker is active and claims the page, so its fetches are the cold ones
          // through the worker (nothing cached yet) and the next loads the warm ones.
          await navigator.serviceWorker.ready;
          if (!navigator.serviceWorker.controller) await Promise.race([claimed, sleep(5000)]);
        }
        if (strategy === "cache-first-update" && navigator.serviceWorker.controller) {
          // The app asks for the worker's script itself: a new version installs now, and the page waits for it.
          var tu = performance.now();
          await reg.update();
          var fresh = reg.installing || reg.waiting;
          if (fresh) await Promise.race([claimed, sleep(5000)]);
          out.update = {ms: performance.now() - tu, new_worker: !!fresh};
        }
        out.controlled_now = !!navigator.serviceWorker.controller;
        out.sw_state = reg.active ? reg.active.state : reg.installing ? "installing" : reg.waiting ? "waiting" : null;
      }
      var base = "/s/" + strategy + "/asset/";
      var map, code;
      if (mode === "sw") {
        map = await timedFetch(base + "map.bin");
        code = await timedFetch(base + "code.js");
      } else {
        var version = (await (await fetch("/version", {cache: "no-store"})).text()).trim();
        var strat = window.S08Strategy;
        map = await strat.timed(strategy, new Request(base + "map.bin"), version);
        code = await strat.timed(strategy, new Request(base + "code.js"), version);
      }
      out.map = map; out.code = code;
      out.load_ms = performance.now() - t;
    } catch (e) { out.error = errInfo(e); }
    try { out.caches = await caches.keys(); } catch (e) { out.caches_error = errInfo(e); }
    return out;
  };

  // -- the command loop ------------------------------------------------------------------------------------------
  async function run(cmd) {
    try { return await commands[cmd.op](cmd); }
    catch (e) { return {op: cmd.op, error: errInfo(e), stack: String(e && e.stack)}; }
  }
  function fromQuery() {
    var cmd = {};
    q.forEach(function (v, k) { cmd[k] = v; });
    return cmd;
  }
  async function nextCommand() {
    // The session's message channel (harness/browser_session.py): {type: "cmd", cmd: {...}}, one at a time.
    if (!window.harness || typeof window.harness.nextMessage !== "function") return null;
    var msg = await window.harness.nextMessage("cmd");
    return msg && msg.cmd ? msg.cmd : null;
  }
  async function main() {
    var cmd = fromQuery();
    if (cmd.frame) {
      var r = await run(cmd);
      window.parent.postMessage({s08held: true, result: r}, "*");
      return;
    }
    if (!cmd.op) cmd.op = "read";
    for (;;) {
      if (cmd.op === "navigate") { location.href = cmd.url; return; } // the next document reports for itself
      if (cmd.op === "stop") return;
      var result = await run(cmd);
      result.at_ms = performance.now() - T0;
      await window.harnessReport(result);
      cmd = await nextCommand();
      if (!cmd) return;
    }
  }
  window.S08App = {expected: expected, noteCheck: noteCheck, fnv: fnv, commands: commands};
  main();
})();
