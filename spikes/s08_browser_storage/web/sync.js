// Spike 8, the sync scenario's page: the shared note and the board as one Yjs document, kept in IndexedDB as its
// update log, with an outbox of the actions made offline, synced with the spike's pycrdt server (sync_server.py).
//
// Why its own update log and not y-indexeddb: y-indexeddb keeps the same log (one record per update), but grows the
// document on every load (y-indexeddb#31) and trims only past 500 updates (PR #36), and a record that does not decode
// would throw inside its load with no way to tell which record failed. Here every record is applied on its own, so a
// bad one is found, counted, and answered with a full resync from the server (then the outbox is replayed: the edits
// it held are not lost with the log).
//
// IndexedDB "s08-sync-<client>": "log" (every update of the document, local or remote, in order), "outbox" (one
// record per action made offline: {seq, id, kind, update}, removed when the server has it), "meta" (counters).
// Every local edit is one IndexedDB transaction over log and outbox together: an edit is stored whole or not at all.
// After each sync the log is compacted to one record (the whole document).
//
// The harness drives the page (sync.py): the first command comes from the query string, the next ones through the
// session's message channel. Commands: start (restore from IndexedDB, then connect unless the session is offline,
// harness.offline, or ?offline=1), offline (the
// connection is cut: make the offline edits), corrupt (overwrite the newest log record with bytes that do not
// decode), online (sync by the strategy), report (the page's text, board and stores). Each answers with harnessReport.
// Frames (binary, one kind byte): S state vector, D diff, U update, A action (JSON header \n update), K ack, Y synced.
import * as Y from "/yjs.js";

const q = new URLSearchParams(location.search);
const CLIENT = q.get("client") || "off";
const PORT = q.get("port");
const SEED = Number(q.get("seed") || 1);
const DB_NAME = "s08-sync-" + CLIENT;
const LOCAL = "local", REMOTE = "remote", RESTORE = "restore";
const enc = new TextEncoder(), dec = new TextDecoder();
const T0 = performance.now();

let db = null;
let doc = null;
let ws = null;
let online = false; // what the harness told the page (navigator.onLine is not it: see the session's notes)
let logWrites = Promise.resolve();
const waiters = []; // [predicate(frame kind, body) -> bool, resolve]
const counts = {bytes_up: 0, bytes_down: 0, frames_up: 0, frames_down: 0};
const health = {corrupt_updates: 0, pending_after_restore: false, full_resyncs: 0, needs_full_resync: false, log_records: 0};
const events = [];

function errInfo(e) { return {name: (e && e.name) || "Error", message: String((e && e.message) || e)}; }
function prng(seed) { // xorshift32: the same edits from the same seed in every engine
  let x = (seed >>> 0) || 0x9e3779b9;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 4294967296; };
}
function req(r) { return new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); }); }
function done(tx) { return new Promise((ok, fail) => { tx.oncomplete = () => ok(); tx.onerror = () => fail(tx.error); tx.onabort = () => fail(tx.error || new Error("transaction aborted")); }); }

async function openDb() {
  const r = indexedDB.open(DB_NAME, 1);
  r.onupgradeneeded = () => {
    const d = r.result;
    d.createObjectStore("log", {autoIncrement: true});
    d.createObjectStore("outbox", {keyPath: "seq"});
    d.createObjectStore("meta");
  };
  return await req(r);
}
async function getAll(store) {
  const tx = db.transaction(store, "readonly");
  const [keys, values] = await Promise.all([req(tx.objectStore(store).getAllKeys()), req(tx.objectStore(store).getAll())]);
  return keys.map((k, i) => [k, values[i]]);
}
async function meta(key, fallback) {
  const v = await req(db.transaction("meta", "readonly").objectStore("meta").get(key));
  return v === undefined ? fallback : v;
}

// -- the document -------------------------------------------------------------------------------------------------
function newDoc() {
  const d = new Y.Doc();
  d.on("update", (update, origin) => {
    // Remote updates go to the log as they come (local ones are written with their outbox record, below).
    if (origin === REMOTE) {
      logWrites = logWrites.then(async () => {
        const tx = db.transaction("log", "readwrite");
        tx.objectStore("log").add(update);
        await done(tx);
      });
    }
  });
  return d;
}
function view() {
  const board = {};
  doc.getMap("board").forEach((v, k) => { if (v && typeof v === "object") board[k] = [Number(v.x), Number(v.y)]; });
  return {text: doc.getText("note").toString(), board};
}

// Restore: apply every log record on its own. A record that throws is corrupt; one whose items stay pending (an
// update it depends on is missing) means the log is not whole. Either way the local copy is not trusted.
async function restore() {
  doc = newDoc();
  const log = await getAll("log");
  health.log_records = log.length;
  const t = performance.now();
  for (const [key, u] of log) {
    try {
      Y.applyUpdate(doc, u instanceof Uint8Array ? u : new Uint8Array(u), RESTORE);
    } catch (e) {
      health.corrupt_updates++;
      events.push({event: "corrupt-update", key, error: errInfo(e)});
    }
  }
  health.pending_after_restore = !!(doc.store.pendingStructs || doc.store.pendingDs);
  if (health.corrupt_updates || health.pending_after_restore) {
    health.needs_full_resync = true;
    doc.destroy();
    doc = newDoc(); // the server's copy replaces it when online; the outbox's edits are replayed on top
  }
  const outbox = await getAll("outbox");
  return {restore_ms: performance.now() - t, outbox: outbox.length, ...view()};
}

// One local edit: the transaction's update goes to the log and, as an action, to the outbox, in one IndexedDB
// transaction; the promise resolves when it is stored.
async function localEdit(kind, id, fn) {
  let update = null;
  const grab = (u, origin) => { if (origin === LOCAL) update = u; };
  doc.on("update", grab);
  doc.transact(fn, LOCAL);
  doc.off("update", grab);
  const seq = await meta("nextSeq", 0);
  const tx = db.transaction(["log", "outbox", "meta"], "readwrite");
  tx.objectStore("log").add(update);
  tx.objectStore("outbox").put({seq, id, kind, update});
  tx.objectStore("meta").put(seq + 1, "nextSeq");
  await done(tx);
  return {seq, id, bytes: update.length};
}

// Replace the log with one record, the whole document; in the log's queue, so no remote update's write is lost.
function compact() {
  const step = logWrites.then(async () => {
    const t = performance.now();
    const tx = db.transaction("log", "readwrite");
    const store = tx.objectStore("log");
    const before = await req(store.count());
    const whole = Y.encodeStateAsUpdate(doc);
    store.clear();
    store.add(whole);
    await done(tx);
    return {records_before: before, bytes_after: whole.length, ms: performance.now() - t};
  });
  logWrites = step.then(() => undefined);
  return step;
}

// -- the connection -------------------------------------------------------------------------------------------------
function send(kind, body) {
  const frame = new Uint8Array(1 + body.length);
  frame[0] = kind.charCodeAt(0);
  frame.set(body, 1);
  ws.send(frame);
  counts.bytes_up += frame.length;
  counts.frames_up++;
}
function expect(pred, ms) {
  return new Promise((ok, fail) => {
    const w = [pred, ok];
    waiters.push(w);
    setTimeout(() => { const i = waiters.indexOf(w); if (i >= 0) { waiters.splice(i, 1); fail(new Error("no answer from the sync server in " + ms + " ms")); } }, ms);
  });
}
function onFrame(data) {
  const frame = new Uint8Array(data);
  counts.bytes_down += frame.length;
  counts.frames_down++;
  const kind = String.fromCharCode(frame[0]), body = frame.subarray(1);
  if (kind === "D" || kind === "U") Y.applyUpdate(doc, body, REMOTE);
  if (kind === "S") send("D", Y.encodeStateAsUpdate(doc, body)); // what the server lacks
  for (let i = 0; i < waiters.length; i++) {
    if (waiters[i][0](kind, body)) { waiters[i][1]({kind, body}); waiters.splice(i, 1); i--; }
  }
}
function connect() {
  return new Promise((ok, fail) => {
    const s = new WebSocket(`ws://127.0.0.1:${PORT}/sync?client=${encodeURIComponent(CLIENT)}`);
    s.binaryType = "arraybuffer";
    s.onopen = () => { ws = s; ok(s); };
    s.onerror = () => fail(new Error("the sync server refused the connection"));
    s.onmessage = (m) => onFrame(m.data);
    s.onclose = (e) => { events.push({event: "ws-close", code: e.code, at_ms: performance.now() - T0}); if (ws === s) ws = null; };
  });
}

// The Yjs exchange: our state vector out, the diff we lack in, the server's state vector in (answered in onFrame
// with the diff it lacks), then Y once the server has applied it.
async function exchange() {
  const synced = expect((k) => k === "Y", 10000);
  send("S", Y.encodeStateVector(doc));
  await synced;
}

// Replay the outbox: every action sent (pipelined), each removed when acknowledged. ``resend`` actions are sent
// twice, as after an acknowledgement lost to a crash: the server must apply them once.
async function replay(resend) {
  const outbox = (await getAll("outbox")).map(([, v]) => v);
  const acked = [];
  const waits = outbox.map((a) => expect((k, b) => k === "K" && Number(dec.decode(b)) === a.seq, 10000).then(async () => {
    const tx = db.transaction("outbox", "readwrite");
    tx.objectStore("outbox").delete(a.seq);
    await done(tx);
    acked.push(a.id);
  }));
  const frames = outbox.map((a) => {
    const head = enc.encode(JSON.stringify({client: CLIENT, seq: a.seq, id: a.id, kind: a.kind}) + "\n");
    const body = new Uint8Array(head.length + a.update.length);
    body.set(head, 0);
    body.set(a.update, head.length);
    return body;
  });
  frames.forEach((f) => send("A", f));
  frames.slice(0, resend).forEach((f) => send("A", f));
  await Promise.all(waits);
  return acked;
}

// -- commands ----------------------------------------------------------------------------------------------------------
const commands = {
  async start(cmd) {
    db = await openDb();
    const restored = await restore();
    const out = {op: "start", restored, health: {...health}};
    // Offline at load (the session's switch, harness.offline): restore only; the harness says when it is online.
    if (!(window.harness && window.harness.offline) && cmd.offline !== "1") {
      const t = performance.now();
      await connect();
      online = true;
      await exchange();
      await logWrites;
      out.initial_sync_ms = performance.now() - t;
    }
    return {...out, ...view()};
  },
  async offline(cmd) {
    online = false;
    if (ws) ws.close();
    await logWrites;
    const edits = Number(cmd.edits || 0), moves = Number(cmd.moves || 0);
    const rand = prng(SEED);
    const made = [];
    const t = performance.now();
    for (let i = 0, m = 0; i < edits || m < moves; i++) {
      if (i < edits) {
        const id = `${CLIENT}.e${i}`;
        const text = doc.getText("note");
        const s = text.toString();
        const spots = [0];
        for (let j = 0; j < s.length; j++) if (s[j] === ">") spots.push(j + 1); // only between tags: a tag stays whole
        const at = spots[Math.floor(rand() * spots.length)];
        made.push({kind: "edit", ...(await localEdit("edit", id, () => text.insert(at, `<${id}>`)))});
      }
      if (m < moves) {
        const id = `${CLIENT}.m${m}`;
        const token = "t" + m, x = Math.floor(rand() * 1000), y = Math.floor(rand() * 800);
        made.push({kind: "move", ...(await localEdit("move", id, () => doc.getMap("board").set(token, {x, y, id})))});
        m++;
      }
    }
    return {op: "offline", made, edit_ms: performance.now() - t, outbox: (await getAll("outbox")).length, ...view()};
  },
  async corrupt() {
    // The newest log record cut to half its length: what a torn write or a bad disk leaves. It no longer decodes.
    const log = await getAll("log");
    const [key, u] = log[log.length - 1];
    const tx = db.transaction("log", "readwrite");
    tx.objectStore("log").put(u.slice(0, Math.max(1, u.length >> 1)), key);
    await done(tx);
    return {op: "corrupt", key, bytes_before: u.length};
  },
  async online(cmd) {
    const strategy = cmd.strategy || "state-vector";
    const resend = Number(cmd.resend || 0);
    for (const k of Object.keys(counts)) counts[k] = 0;
    const t = performance.now();
    await connect();
    online = true;
    const connect_ms = performance.now() - t;
    let acked = [];
    const fallback = health.needs_full_resync;
    if (strategy === "outbox-replay" || fallback) {
      // A full resync gets the server's copy first (the exchange from an empty document), then replays the outbox.
      if (fallback) await exchange();
      acked = await replay(resend);
      await exchange(); // what the server has that we lack (the other clients' edits, our replayed ones)
    } else {
      const entries = (await getAll("outbox")).map(([, v]) => v);
      await exchange();
      // Y: the server has applied everything we had, so every action in the outbox has arrived: drain those.
      const tx = db.transaction("outbox", "readwrite");
      entries.forEach((a) => tx.objectStore("outbox").delete(a.seq));
      await done(tx);
      acked = entries.map((a) => a.id);
    }
    const sync_ms = performance.now() - t;
    // The server has it all: the log becomes one record, the document as it now is (after a bad record, the log
    // cannot be trusted anyway). Without this the log grows by a record per update for ever (y-indexeddb#31).
    const compacted = await compact();
    if (fallback) {
      health.full_resyncs++;
      health.needs_full_resync = false;
    }
    return {op: "online", strategy, fallback, acked, connect_ms, sync_ms, compacted, ...counts, outbox_left: (await getAll("outbox")).length, ...view()};
  },
  async report() {
    await logWrites;
    return {op: "report", outbox_left: (await getAll("outbox")).length, log_records: (await getAll("log")).length, online, connected: !!ws, ...view()};
  },
};

async function run(cmd) {
  try { return await commands[cmd.op](cmd); } catch (e) { return {op: cmd.op, error: errInfo(e), stack: String(e && e.stack)}; }
}
async function nextCommand() {
  // The session's message channel (harness/browser_session.py): the harness's commands are {type: "cmd", op...}.
  return window.harness ? await window.harness.nextMessage("cmd") : null;
}
async function main() {
  const cmd = {op: "start"};
  q.forEach((v, k) => { cmd[k] = v; });
  for (let c = cmd; c; ) {
    const result = await run(c);
    result.at_ms = performance.now() - T0;
    result.health = {...health};
    result.events = events.splice(0);
    await window.harnessReport(result);
    c = await nextCommand();
    if (typeof c === "string") c = JSON.parse(c);
    if (c && c.op === "stop") return;
  }
}
main();
