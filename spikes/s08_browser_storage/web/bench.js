// Spike 8's measurements in the page: how much each store takes before it fails (and how it fails), how fast it writes
// and reads the app's token records, and whether each store round-trips the app's offline data.
//
// run(config) returns a plain JSON object; config.mode is "limits", "speed" or "roundtrip" (see bench.py, which builds
// the config and reads the result). Every figure is the page's own clock (performance.now()).

import { KINDS, openStore } from "/stores.js";

const MiB = 1024 * 1024;
const now = () => performance.now();
const round1 = (x) => Math.round(x * 10) / 10;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function errorInfo(e) {
  if (!e) return null;
  return { name: String(e.name || "Error"), message: String(e.message || e).slice(0, 500) };
}

async function estimate() {
  try {
    const e = await navigator.storage.estimate();
    return { usage: e.usage ?? null, quota: e.quota ?? null };
  } catch (e) {
    return { error: errorInfo(e) };
  }
}

// Incompressible bytes: getRandomValues fills at most 64 KiB per call.
function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

// 64 bytes sampled across the buffer, and its length: enough to tell a chunk read back from any other random chunk.
function fingerprint(buf) {
  const b = new Uint8Array(buf);
  const step = Math.max(1, Math.floor(b.length / 64));
  let s = `${b.length}:`;
  for (let i = 0; i < b.length && s.length < 200; i += step) s += b[i].toString(16).padStart(2, "0");
  return s;
}

// -- main-thread blocking: the longest gap between setTimeout(0) heartbeats while an operation runs --------------------
//
// A heartbeat runs whenever the main thread is free; a gap between two is a stall. Timers are clamped to about 4 ms
// once nested, so gaps under ~5 ms mean "not blocked". Chromium's long-task observer (tasks over 50 ms) is kept beside.

function heartbeat() {
  let last = now();
  let longest = 0;
  let beats = 0;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    const t = now();
    longest = Math.max(longest, t - last);
    last = t;
    beats++;
    setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  let longTasks = null;
  let observer = null;
  try {
    if (typeof PerformanceObserver !== "undefined" && (PerformanceObserver.supportedEntryTypes || []).includes("longtask")) {
      longTasks = [];
      observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) longTasks.push(e.duration);
      });
      observer.observe({ type: "longtask" });
    }
  } catch (e) {
    longTasks = null;
  }
  return {
    stop() {
      stopped = true;
      longest = Math.max(longest, now() - last); // the stretch from the last beat to the end counts too
      if (observer) {
        for (const e of observer.takeRecords()) longTasks.push(e.duration);
        observer.disconnect();
      }
      return {
        longestStallMs: round1(longest),
        beats,
        longTaskMaxMs: longTasks && longTasks.length ? round1(Math.max(...longTasks)) : longTasks ? 0 : null,
      };
    },
  };
}

const yieldToLoop = () => new Promise((r) => setTimeout(r, 0));

// -- limits ------------------------------------------------------------------------------------------------------------

// Write incompressible chunks until the store fails or maxBytes are stored; then check what the failure left behind.
async function probeStore(kind, cfg) {
  const maxBytes = cfg.maxMib * MiB;
  const step = cfg.stepMib * MiB;
  const out = { kind, maxBytes, chunkBytes: step };
  let s;
  try {
    s = await openStore(kind, { name: "s08-limits" });
    await s.clear();
  } catch (e) {
    return { ...out, available: false, error: errorInfo(e) };
  }
  out.available = true;
  out.transactional = s.transactional;
  out.batch = s.batch;
  out.estimateBefore = await estimate();
  const prints = [];
  let stored = 0;
  let failedKey = null;
  let error = null;
  let stopped = null;
  const t0 = now();
  const deadline = t0 + cfg.storeBudgetMs;
  while (stored < maxBytes) {
    if (now() > deadline) {
      stopped = "time budget";
      break;
    }
    const n = Math.min(step, maxBytes - stored);
    const chunk = randomBytes(n);
    const key = `chunk-${String(prints.length).padStart(6, "0")}`;
    try {
      await s.put(key, chunk.buffer);
    } catch (e) {
      error = errorInfo(e);
      failedKey = key;
      break;
    }
    prints.push(fingerprint(chunk.buffer));
    stored += n;
  }
  const ms = now() - t0;
  Object.assign(out, {
    reached: error === null && stopped === null,
    bytesStored: stored,
    mibStored: round1(stored / MiB),
    chunks: prints.length,
    error,
    stopped,
    ms: Math.round(ms),
    writeMibPerS: ms > 0 ? round1(stored / MiB / (ms / 1000)) : null,
  });
  out.estimateAtEnd = await estimate();
  if (error) out.afterError = await checkAfterError(s, failedKey, prints);
  const tClear = now();
  try {
    await s.destroy();
    out.cleared = true;
    out.destroyMs = Math.round(now() - tClear);
  } catch (e) {
    out.cleared = false;
    out.clearError = errorInfo(e);
  }
  out.estimateAfterClear = await estimate();
  return out;
}

// After a failed write: is the failing chunk absent (rolled back), are the earlier chunks all listed and readable, and
// does a small write succeed again once the failed data is gone? Earlier chunks are read back at the first, middle
// and last positions (not all: a gigabyte read back would cost the run's budget).
async function checkAfterError(s, failedKey, prints) {
  const out = {};
  try {
    const keys = await s.keys();
    out.keysListed = keys.length;
    out.failedKeyListed = keys.includes(failedKey);
  } catch (e) {
    out.keysError = errorInfo(e);
  }
  try {
    const v = await s.get(failedKey);
    out.failedChunkPresent = v !== undefined && v !== null;
    out.failedChunkBytes = v && v.byteLength !== undefined ? v.byteLength : null;
  } catch (e) {
    out.failedReadError = errorInfo(e);
  }
  const idx = [...new Set([0, prints.length >> 1, prints.length - 1])].filter((i) => i >= 0 && i < prints.length);
  let readable = 0;
  const bad = [];
  for (const i of idx) {
    const key = `chunk-${String(i).padStart(6, "0")}`;
    try {
      const v = await s.get(key);
      if (v && fingerprint(v) === prints[i]) readable++;
      else bad.push({ key, got: v === undefined ? "absent" : "different bytes" });
    } catch (e) {
      bad.push({ key, error: errorInfo(e) });
    }
  }
  out.earlierChecked = idx.length;
  out.earlierReadable = readable;
  out.earlierBad = bad;
  out.rolledBack = out.failedChunkPresent === false && out.failedKeyListed !== true;
  out.earlierIntact = readable === idx.length && (out.keysListed === undefined || out.keysListed >= prints.length);
  // Writable again once room is made: drop the last good chunk, then write a small record.
  try {
    if (prints.length) await s.delete(`chunk-${String(prints.length - 1).padStart(6, "0")}`);
    await s.put("after-error", { ok: true });
    out.writableAfterDelete = (await s.get("after-error"))?.ok === true;
  } catch (e) {
    out.writableAfterDelete = false;
    out.writeAfterDeleteError = errorInfo(e);
  }
  return out;
}

// localStorage's limit in UTF-16 code units: the longest value one key takes, found by doubling then bisection.
// `ch` is the repeated character: "a" (Latin-1: an engine may store it in one byte) and "€" (outside Latin-1).
function localStorageLimit(ch, capChars) {
  const key = "s08-ls-probe";
  const out = { char: ch, keyChars: key.length };
  let firstError = null;
  const fits = (n) => {
    try {
      localStorage.removeItem(key);
      localStorage.setItem(key, ch.repeat(n));
      return true;
    } catch (e) {
      firstError = firstError || errorInfo(e);
      return false;
    } finally {
      try {
        localStorage.removeItem(key);
      } catch (e) {
        /* nothing stored */
      }
    }
  };
  const t0 = now();
  try {
    localStorage.clear();
  } catch (e) {
    return { ...out, available: false, error: errorInfo(e) };
  }
  let lo = 0;
  let hi = 1 << 20;
  let tries = 0;
  while (hi <= capChars && fits(hi)) {
    lo = hi;
    hi *= 2;
    tries++;
  }
  if (hi > capChars) {
    return { ...out, available: true, reached: true, valueChars: lo, capChars, error: null, tries, ms: Math.round(now() - t0) };
  }
  while (hi - lo > 1) {
    const mid = lo + ((hi - lo) >> 1);
    if (fits(mid)) lo = mid;
    else hi = mid;
    tries++;
  }
  return {
    ...out,
    available: true,
    reached: false,
    valueChars: lo,
    totalChars: lo + key.length,
    error: firstError,
    tries,
    ms: Math.round(now() - t0),
  };
}

// Memory is not storage (gone with the page): chunks held in a Map up to a modest cap, with the JS heap where the
// engine reports it (performance.memory: Chromium only; V8 counts ArrayBuffer contents as external memory in it).
async function memoryHeld(cfg) {
  const heap = () => (performance.memory ? performance.memory.usedJSHeapSize : null);
  const s = await openStore("memory");
  const capBytes = Math.min(cfg.memoryCapMib, cfg.maxMib) * MiB;
  const step = cfg.stepMib * MiB;
  const heapBefore = heap();
  const t0 = now();
  let held = 0;
  let error = null;
  let i = 0;
  while (held < capBytes) {
    const n = Math.min(step, capBytes - held);
    try {
      await s.put(`chunk-${i++}`, randomBytes(n).buffer);
    } catch (e) {
      error = errorInfo(e);
      break;
    }
    held += n;
  }
  const ms = now() - t0;
  const heapAfter = heap();
  await s.clear();
  return {
    kind: "memory",
    available: true,
    storage: false,
    note: "not storage: held by the page and gone when it closes; probed only up to a modest cap",
    capBytes,
    bytesHeld: held,
    mibHeld: round1(held / MiB),
    reached: error === null,
    error,
    ms: Math.round(ms),
    jsHeapBefore: heapBefore,
    jsHeapAfter: heapAfter,
    jsHeapGrowth: heapBefore !== null && heapAfter !== null ? heapAfter - heapBefore : null,
  };
}

async function runLimits(cfg) {
  const stores = {};
  for (const kind of cfg.stores) {
    const t0 = now();
    try {
      if (kind === "localstorage") {
        stores[kind] = {
          kind,
          latin1: localStorageLimit("a", cfg.lsCapChars),
          nonLatin1: localStorageLimit("\u20ac", cfg.lsCapChars),
        };
        stores[kind].available = stores[kind].latin1.available;
      } else if (kind === "memory") {
        stores[kind] = await memoryHeld(cfg);
      } else {
        stores[kind] = await probeStore(kind, cfg);
      }
    } catch (e) {
      stores[kind] = { kind, available: false, error: errorInfo(e), crashed: true };
    }
    stores[kind].wallMs = Math.round(now() - t0);
    await yieldToLoop();
  }
  return { mode: "limits", stores, estimate: await estimate(), persisted: await persisted() };
}

async function persisted() {
  try {
    return navigator.storage && navigator.storage.persisted ? await navigator.storage.persisted() : null;
  } catch (e) {
    return null;
  }
}

// -- speed -------------------------------------------------------------------------------------------------------------

// The app's token record: about 100 bytes of JSON.
export function tokenRecord(i) {
  return {
    id: `tok-${String(i).padStart(5, "0")}`,
    x: Math.round(((i * 37) % 4096) * 4) / 4,
    y: Math.round(((i * 91) % 4096) * 4) / 4,
    art: `/art/token-${String(i % 48).padStart(2, "0")}.webp`,
    owner: `player-${i % 6}`,
    updatedAt: 1764600000000 + i * 17,
  };
}

async function timed(fn) {
  const hb = heartbeat();
  const t0 = now();
  let error = null;
  try {
    await fn();
  } catch (e) {
    error = errorInfo(e);
  }
  const ms = now() - t0;
  const block = hb.stop();
  await yieldToLoop();
  return { ms, error, ...block };
}

function summarise(samples, records, extra = {}) {
  const ok = samples.filter((x) => !x.error);
  if (!ok.length) return { records, rounds: samples.length, error: samples[0] && samples[0].error, ...extra };
  const ms = median(ok.map((x) => x.ms));
  return {
    records,
    rounds: ok.length,
    ms: round1(ms),
    msSamples: ok.map((x) => round1(x.ms)),
    recordsPerS: ms > 0 ? Math.round(records / (ms / 1000)) : null,
    longestStallMs: round1(median(ok.map((x) => x.longestStallMs))),
    longTaskMaxMs: ok[0].longTaskMaxMs === null ? null : round1(median(ok.map((x) => x.longTaskMaxMs))),
    error: samples.find((x) => x.error)?.error || null,
    ...extra,
  };
}

// One store at one count: write one record per put (one transaction each), write all in one putMany, read all back.
// Rounds of a mode stop before they would take more than cfg.opBudgetMs together (at least one runs). A mode whose time
// per record (seen at the previous count, or in a pilot of 100 records) predicts more than that runs on the first
// records only (capped: the figures are the measured part's, at least cfg.minRecords). Past `deadline` (the store's
// share of the engine's budget) the remaining modes are skipped.
async function speedOne(s, count, cfg, hint, deadline) {
  const entries = Array.from({ length: count }, (_, i) => {
    const r = tokenRecord(i);
    return [r.id, r];
  });
  const out = { count };
  const size = (mode) => {
    const per = hint[mode];
    return per && per * count > cfg.opBudgetMs ? Math.max(Math.min(count, cfg.minRecords), Math.floor(cfg.opBudgetMs / per)) : count;
  };
  const late = (records) => (now() > deadline ? { records, skipped: "the store's share of the speed budget was spent" } : null);
  if (!hint.eachTx) {
    // The pilot: one-per-record writes can be slow enough (IndexedDB: about 1 ms each) to need a cap from the start.
    await s.clear();
    const t = now();
    for (const [k, v] of entries.slice(0, 100)) await s.put(k, v);
    hint.eachTx = (now() - t) / Math.min(100, count);
  }
  // Rounds of one mode on n records: `prepare` (untimed) before each, `op` timed.
  const measure = async (mode, n, prepare, op, extra = {}) => {
    const samples = [];
    for (let r = 0; r < cfg.rounds; r++) {
      await prepare();
      samples.push(await timed(op));
      if (samples.reduce((a, x) => a + x.ms, 0) + samples[0].ms > cfg.opBudgetMs) break; // another round would overrun
    }
    if (!samples[0].error) hint[mode] = samples[0].ms / n;
    return summarise(samples, n, n < count ? { capped: true, of: count, ...extra } : extra);
  };

  const nEach = size("eachTx");
  const eachEntries = entries.slice(0, nEach);
  out.eachTx = late(nEach) || await measure(
    "eachTx",
    nEach,
    () => s.clear(),
    async () => {
      for (const [k, v] of eachEntries) await s.put(k, v);
    },
  );

  if (s.kind === "memory" || s.kind === "localstorage") {
    out.oneTx = { records: count, na: true, note: `n/a: ${s.kind} has no transactions (writes are synchronous)` };
  } else {
    const note = {
      transaction: "",
      concurrent: "no transaction: the writes are issued together, each atomic alone",
      sequential: "no transaction: the writes run one after another",
    }[s.batch];
    const nAll = size("oneTx");
    const allEntries = entries.slice(0, nAll);
    out.oneTx = late(nAll) || await measure(
      "oneTx",
      nAll,
      () => s.clear(),
      () => s.putMany(allEntries),
      note ? { note } : {},
    );
  }

  // Read back what one putMany (untimed) wrote: all records, or the first nRead when reading all would take too long.
  const nRead = Math.min(size("readAll"), size("oneTx")); // the untimed write before it must stay short too
  const readKeys = entries.slice(0, nRead).map(([k]) => k);
  let verified = null;
  out.readAll = late(nRead);
  if (out.readAll) return out;
  await s.clear();
  await s.putMany(entries.slice(0, nRead));
  out.readAll = await measure(
    "readAll",
    nRead,
    async () => {},
    async () => {
      const got = await s.getMany(readKeys);
      const probe = [0, nRead >> 1, nRead - 1];
      verified = got.length === nRead && probe.every((i) => got[i] && got[i].id === entries[i][1].id && got[i].updatedAt === entries[i][1].updatedAt);
    },
  );
  out.readAll.verified = verified;
  await s.clear();
  return out;
}

// The engine's budget is shared out as the run goes: each store gets what is left over the stores still to run (the
// fast ones leave theirs to the slow), and each timed operation a third of its store's share (cfg.opBudgetMs at most).
async function runSpeed(cfg) {
  const stores = {};
  const t0 = now();
  for (const [i, kind] of cfg.stores.entries()) {
    const share = (cfg.budgetMs - (now() - t0)) / (cfg.stores.length - i);
    let s;
    try {
      s = await openStore(kind, { name: "s08-speed" });
      await s.clear();
    } catch (e) {
      stores[kind] = { kind, available: false, error: errorInfo(e) };
      continue;
    }
    const hint = {};
    const opBudgetMs = Math.max(cfg.minOpBudgetMs, Math.min(cfg.opBudgetMs, share / 3));
    const res = { kind, available: true, transactional: s.transactional, batch: s.batch, shareMs: Math.round(share), opBudgetMs: Math.round(opBudgetMs), counts: {} };
    const ks = now();
    for (const count of cfg.counts) {
      if (now() - t0 > cfg.budgetMs || now() > ks + share) {
        res.counts[count] = { count, skipped: "the store's share of the speed budget was spent" };
        continue;
      }
      try {
        res.counts[count] = await speedOne(s, count, { ...cfg, opBudgetMs }, hint, ks + share);
      } catch (e) {
        res.counts[count] = { count, error: errorInfo(e) };
      }
    }
    res.wallMs = Math.round(now() - ks);
    try {
      await s.destroy();
    } catch (e) {
      res.destroyError = errorInfo(e);
    }
    stores[kind] = res;
  }
  return { mode: "speed", stores, wallMs: Math.round(now() - t0) };
}

// -- round-trip --------------------------------------------------------------------------------------------------------

// The app's offline data: the board snapshot (100 tokens), preferences, the outbox, map art (bytes), the note's update log.
export function appRecords() {
  const art = randomBytes(200 * 1024 + 7);
  return [
    ["board/snapshot", { version: 3, room: "r1", seq: 4021, tokens: Array.from({ length: 100 }, (_, i) => tokenRecord(i)) }],
    ["prefs", { theme: "dark", grid: true, zoom: 1.25, name: "Zoë \u{1F3B2}", hotkeys: { undo: "Ctrl+Z" } }],
    [
      "outbox",
      [
        { op: "move", id: "tok-00003", x: 10, y: 20, at: 1764600000001, clientSeq: 1 },
        { op: "note", update: [1, 2, 3, 250], at: 1764600000002, clientSeq: 2 },
      ],
    ],
    ["art/map-1", art.buffer],
    ["note/updates", { doc: "note", updates: ["AQKJr7gGAAQB", "AQOJr7gGAgQB"], stateVector: "AYmvuAYC" }],
    ["weird key/with ../ and ? # % é", { ok: true, empty: [], nil: null, n: -0.5 }],
  ];
}

function same(a, b) {
  if (a instanceof ArrayBuffer || b instanceof ArrayBuffer) {
    if (!(a instanceof ArrayBuffer && b instanceof ArrayBuffer) || a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a);
    const y = new Uint8Array(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  return JSON.stringify(a) === JSON.stringify(b);
}

async function roundTripOne(kind) {
  const out = { kind, problems: [] };
  const records = appRecords();
  let s;
  try {
    s = await openStore(kind, { name: "s08-roundtrip" });
  } catch (e) {
    return { ...out, available: false, error: errorInfo(e) };
  }
  out.available = true;
  try {
    await s.clear();
    for (const [k, v] of records.slice(0, 3)) await s.put(k, v);
    await s.putMany(records.slice(3));
    for (const [k, v] of records) {
      const got = await s.get(k);
      if (!same(got, v)) out.problems.push(`get(${JSON.stringify(k)}) differs`);
    }
    const many = await s.getMany(records.map(([k]) => k));
    records.forEach(([k, v], i) => {
      if (!same(many[i], v)) out.problems.push(`getMany: ${JSON.stringify(k)} differs`);
    });
    const keys = await s.keys();
    const want = records.map(([k]) => k).sort();
    if (JSON.stringify(keys) !== JSON.stringify(want)) out.problems.push(`keys() ${JSON.stringify(keys)}`);
    if ((await s.get("absent")) !== undefined) out.problems.push("an absent key is not undefined");
    const [absent] = await s.getMany(["absent"]);
    if (absent !== undefined) out.problems.push("getMany: an absent key is not undefined");
    // A stored object is a copy: changing ours after put must not change what is stored.
    const prefs = { theme: "light" };
    await s.put("copy", prefs);
    prefs.theme = "changed";
    if ((await s.get("copy")).theme !== "light") out.problems.push("put stored a reference, not a copy");
    await s.delete("copy");
    await s.delete("copy"); // deleting an absent key is not an error
    await s.clear();
    const left = await s.keys();
    if (left.length) out.problems.push(`clear() left ${left.length} keys`);
    await s.put("after-clear", { ok: 1 });
    if ((await s.get("after-clear"))?.ok !== 1) out.problems.push("not writable after clear()");
    await s.destroy();
  } catch (e) {
    out.problems.push(`threw ${e && e.name}: ${e && e.message}`);
    out.error = errorInfo(e);
  }
  out.ok = out.problems.length === 0;
  return out;
}

async function runRoundTrip(cfg) {
  const stores = {};
  for (const kind of cfg.stores) stores[kind] = await roundTripOne(kind);
  return { mode: "roundtrip", stores };
}

// -- entry -------------------------------------------------------------------------------------------------------------

const DEFAULTS = {
  stores: KINDS,
  maxMib: 64,
  stepMib: 8,
  memoryCapMib: 256,
  storeBudgetMs: 60000,
  lsCapChars: 1 << 25,
  counts: [1000, 10000],
  rounds: 3,
  opBudgetMs: 9000,
  minOpBudgetMs: 300,
  minRecords: 500,
  budgetMs: 20000,
};

export async function run(config) {
  const cfg = { ...DEFAULTS, ...config };
  const t0 = now();
  let result;
  if (cfg.mode === "limits") result = await runLimits(cfg);
  else if (cfg.mode === "speed") result = await runSpeed(cfg);
  else if (cfg.mode === "roundtrip") result = await runRoundTrip(cfg);
  else throw new Error(`unknown mode ${JSON.stringify(cfg.mode)}`);
  result.config = cfg;
  result.pageMs = Math.round(now() - t0);
  result.secureContext = window.isSecureContext;
  result.origin = location.origin;
  return result;
}
