// Spike 8's storage options behind one interface, so every page (bench, app, sync) measures the same code.
//
//   const s = await openStore(kind)      // kind: localstorage | indexeddb | idb | cacheapi | memory | opfs
//   await s.put(key, value)              // value: a JSON-able object, or an ArrayBuffer (a typed array is taken as its bytes)
//   await s.get(key)                     // the value, or undefined when the key is absent
//   await s.putMany([[k, v], ...])       // one transaction where the store has them (s.transactional)
//   await s.getMany([k, ...])            // values in order (undefined for absent keys); one transaction where possible
//   await s.keys()                       // every key, sorted
//   await s.delete(key)
//   await s.clear()                      // every key gone, the store still usable
//   await s.destroy()                    // the backing database / cache / directory deleted (space given back); unusable after
//   s.kind, s.transactional, s.persistent, s.batch ("transaction" | "concurrent" | "sequential": what putMany does)
//
// Errors are rethrown as the engine raised them, so err.name (QuotaExceededError, UnknownError...) is the engine's.
// openStore(kind, {name, version, idbUrl}) keeps option sets apart: `name` namespaces every store (a localStorage key
// prefix, a database, a cache, a directory), `version` is the Cache API's cache-name version, `idbUrl` where the bundled
// idb library is served (default /idb.js).

export const KINDS = ["localstorage", "indexeddb", "idb", "cacheapi", "memory", "opfs"];

const enc = new TextEncoder();
const dec = new TextDecoder();

function asBuffer(value) {
  if (value instanceof ArrayBuffer) return value;
  if (ArrayBuffer.isView(value)) return value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
  return null;
}

function unsupported(message) {
  const e = new Error(message);
  e.name = "NotSupportedError";
  return e;
}

// -- localStorage: synchronous strings; JSON for objects, base64 for bytes ---------------------------------------------

function toBase64(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out.buffer;
}

function localStore(name) {
  const prefix = `${name}:`;
  const encode = (v) => {
    const b = asBuffer(v);
    return b ? `b${toBase64(b)}` : `j${JSON.stringify(v)}`;
  };
  const decode = (s) => (s === null ? undefined : s[0] === "b" ? fromBase64(s.slice(1)) : JSON.parse(s.slice(1)));
  // Object.keys, not key(i) in a loop: Firefox's key(i) walks its table, which made clearing 10,000 keys take seconds.
  const ownKeys = () =>
    Object.keys(localStorage)
      .filter((k) => k.startsWith(prefix))
      .map((k) => k.slice(prefix.length))
      .sort();
  return {
    kind: "localstorage",
    batch: "sequential",
    transactional: false,
    persistent: true,
    async put(key, value) {
      localStorage.setItem(prefix + key, encode(value));
    },
    async get(key) {
      return decode(localStorage.getItem(prefix + key));
    },
    // No transactions: a quota error part way leaves the earlier items written.
    async putMany(entries) {
      for (const [k, v] of entries) localStorage.setItem(prefix + k, encode(v));
    },
    async getMany(keys) {
      return keys.map((k) => decode(localStorage.getItem(prefix + k)));
    },
    async keys() {
      return ownKeys();
    },
    async delete(key) {
      localStorage.removeItem(prefix + key);
    },
    async clear() {
      for (const k of ownKeys()) localStorage.removeItem(prefix + k);
    },
    async destroy() {
      await this.clear();
    },
  };
}

// -- IndexedDB, raw: one object store "kv", out-of-line keys, values as structured clones ------------------------------

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

// A transaction's outcome: resolves on complete, rejects with the error that aborted it (a quota error is reported on
// the transaction, sometimes only there: the request itself may have succeeded before the commit failed).
function settled(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || abortError("the transaction was aborted"));
  });
}

function abortError(message) {
  const e = new Error(message);
  e.name = "AbortError";
  return e;
}

function openDatabase(dbName) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(dbName, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("kv");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(Object.assign(new Error(`opening ${dbName} is blocked by another connection`), { name: "BlockedError" }));
  });
}

function deleteDatabase(dbName) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(dbName);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
    req.onblocked = () => resolve(); // our own connection is closed first; another tab's would delay it, not fail it
  });
}

async function rawIndexedDB(name) {
  const dbName = `${name}-indexeddb`;
  let db = await openDatabase(dbName);
  const write = async (fn) => {
    const tx = db.transaction("kv", "readwrite");
    const done = settled(tx);
    try {
      fn(tx.objectStore("kv"));
    } catch (e) {
      done.catch(() => {}); // a value that cannot be cloned: nothing was written, the caller gets that error
      tx.abort();
      throw e;
    }
    await done;
  };
  const read = async (fn) => {
    const tx = db.transaction("kv", "readonly");
    return fn(tx.objectStore("kv"));
  };
  return {
    kind: "indexeddb",
    batch: "transaction",
    transactional: true,
    persistent: true,
    put: (key, value) => write((os) => os.put(asBuffer(value) || value, key)),
    get: (key) => read((os) => request(os.get(key))),
    putMany: (entries) =>
      write((os) => {
        for (const [k, v] of entries) os.put(asBuffer(v) || v, k);
      }),
    getMany: (keys) => read((os) => Promise.all(keys.map((k) => request(os.get(k))))),
    keys: () => read((os) => request(os.getAllKeys())).then((ks) => ks.map(String).sort()),
    delete: (key) => write((os) => os.delete(key)),
    clear: () => write((os) => os.clear()),
    async destroy() {
      db.close();
      await deleteDatabase(dbName);
    },
    // For the other pages: the connection, e.g. to close it before a version change.
    get db() {
      return db;
    },
    async reopen() {
      db.close();
      db = await openDatabase(dbName);
    },
  };
}

// -- idb: the same database shape through Jake Archibald's promise wrapper, bundled from npm ---------------------------

let idbModule = null;

async function idbStore(name, idbUrl) {
  idbModule = idbModule || (await import(idbUrl));
  const { openDB, deleteDB } = idbModule;
  const dbName = `${name}-idb`;
  const db = await openDB(dbName, 1, { upgrade: (d) => d.createObjectStore("kv") });
  return {
    kind: "idb",
    batch: "transaction",
    transactional: true,
    persistent: true,
    async put(key, value) {
      const tx = db.transaction("kv", "readwrite");
      await Promise.all([tx.store.put(asBuffer(value) || value, key), tx.done]);
    },
    get: (key) => db.get("kv", key),
    async putMany(entries) {
      const tx = db.transaction("kv", "readwrite");
      await Promise.all([...entries.map(([k, v]) => tx.store.put(asBuffer(v) || v, k)), tx.done]);
    },
    async getMany(keys) {
      const tx = db.transaction("kv", "readonly");
      const [values] = await Promise.all([Promise.all(keys.map((k) => tx.store.get(k))), tx.done]);
      return values;
    },
    keys: () => db.getAllKeys("kv").then((ks) => ks.map(String).sort()),
    async delete(key) {
      await db.delete("kv", key);
    },
    async clear() {
      await db.clear("kv");
    },
    async destroy() {
      db.close();
      await deleteDB(dbName);
    },
    get db() {
      return db;
    },
  };
}

// -- Cache API: Responses under a versioned cache name, keys as URLs under a path no server answers -------------------

const CACHE_PATH = "/__s08-store/";

async function cacheStore(name, version) {
  if (typeof caches === "undefined") throw unsupported("the Cache API is not available here (caches is undefined)");
  const cacheName = `${name}-v${version}`;
  let cache = await caches.open(cacheName);
  const url = (key) => new URL(CACHE_PATH + encodeURIComponent(key), location.origin).href;
  const response = (value) => {
    const b = asBuffer(value);
    return b
      ? new Response(b, { headers: { "Content-Type": "application/octet-stream" } })
      : new Response(JSON.stringify(value), { headers: { "Content-Type": "application/json" } });
  };
  const decode = async (resp) => {
    if (!resp) return undefined;
    return resp.headers.get("Content-Type") === "application/octet-stream" ? resp.arrayBuffer() : resp.json();
  };
  return {
    kind: "cacheapi",
    batch: "concurrent",
    transactional: false,
    persistent: true,
    cacheName,
    put: (key, value) => cache.put(url(key), response(value)),
    get: async (key) => decode(await cache.match(url(key))),
    // No transaction is exposed (only addAll batches, and it fetches): puts run concurrently, each atomic on its own.
    async putMany(entries) {
      await Promise.all(entries.map(([k, v]) => cache.put(url(k), response(v))));
    },
    getMany: (keys) => Promise.all(keys.map(async (k) => decode(await cache.match(url(k))))),
    async keys() {
      const reqs = await cache.keys();
      const out = [];
      for (const r of reqs) {
        const path = new URL(r.url).pathname;
        if (path.startsWith(CACHE_PATH)) out.push(decodeURIComponent(path.slice(CACHE_PATH.length)));
      }
      return out.sort();
    },
    async delete(key) {
      await cache.delete(url(key));
    },
    async clear() {
      await caches.delete(cacheName);
      cache = await caches.open(cacheName);
    },
    async destroy() {
      await caches.delete(cacheName);
    },
  };
}

// -- memory: a Map of structured clones (what a page holds until it is closed) -----------------------------------------

function memoryStore() {
  const map = new Map();
  const copy = (v) => {
    const b = asBuffer(v);
    return b ? b.slice(0) : structuredClone(v);
  };
  return {
    kind: "memory",
    batch: "sequential",
    transactional: false,
    persistent: false,
    async put(key, value) {
      map.set(key, copy(value));
    },
    async get(key) {
      return map.has(key) ? copy(map.get(key)) : undefined;
    },
    async putMany(entries) {
      for (const [k, v] of entries) map.set(k, copy(v));
    },
    async getMany(keys) {
      return keys.map((k) => (map.has(k) ? copy(map.get(k)) : undefined));
    },
    async keys() {
      return [...map.keys()].sort();
    },
    async delete(key) {
      map.delete(key);
    },
    async clear() {
      map.clear();
    },
    async destroy() {
      map.clear();
    },
  };
}

// -- OPFS: one file per key in a directory of the origin's private file system, written through the async API --------
//
// A file is a one-byte tag ("J" JSON, "B" bytes) and the payload. createWritable() writes to a swap file that replaces
// the original on close(), so a failed write leaves the previous content (or no file). Sync access handles exist only
// in workers; a page uses the async API.

const TAG_JSON = 0x4a;
const TAG_BYTES = 0x42;

function fileName(key) {
  return `k${encodeURIComponent(key)}`; // "k" prefix: "." and ".." are not valid names, "/" is encoded
}

async function opfsStore(name) {
  if (!navigator.storage || typeof navigator.storage.getDirectory !== "function") {
    throw unsupported("the Origin Private File System is not available here (navigator.storage.getDirectory is missing)");
  }
  const root = await navigator.storage.getDirectory();
  const dirName = `${name}-opfs`;
  let dir = await root.getDirectoryHandle(dirName, { create: true });
  const write = async (key, value) => {
    const b = asBuffer(value);
    const body = new Blob([new Uint8Array([b ? TAG_BYTES : TAG_JSON]), b ? b : enc.encode(JSON.stringify(value))]);
    const fh = await dir.getFileHandle(fileName(key), { create: true });
    if (typeof fh.createWritable !== "function") {
      await dir.removeEntry(fileName(key)).catch(() => {});
      throw unsupported("FileSystemFileHandle.createWritable is missing (OPFS writes need a worker's sync access handle here)");
    }
    const w = await fh.createWritable();
    try {
      await w.write(body);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      // getFileHandle({create}) made the file before the write failed: an empty file is no value, so it goes too.
      const f = await fh.getFile().catch(() => null);
      if (f && f.size === 0) await dir.removeEntry(fileName(key)).catch(() => {});
      throw e;
    }
  };
  const read = async (key) => {
    let fh;
    try {
      fh = await dir.getFileHandle(fileName(key));
    } catch (e) {
      if (e && e.name === "NotFoundError") return undefined;
      throw e;
    }
    const buf = await (await fh.getFile()).arrayBuffer();
    if (buf.byteLength === 0) return undefined; // created, never written (a write that failed before its commit)
    const tag = new Uint8Array(buf, 0, 1)[0];
    return tag === TAG_BYTES ? buf.slice(1) : JSON.parse(dec.decode(new Uint8Array(buf, 1)));
  };
  const names = async () => {
    const out = [];
    for await (const n of dir.keys()) out.push(n);
    return out;
  };
  return {
    kind: "opfs",
    batch: "sequential",
    transactional: false,
    persistent: true,
    put: write,
    get: read,
    // No transaction: files are written one after another; a failure leaves the earlier ones in place.
    async putMany(entries) {
      for (const [k, v] of entries) await write(k, v);
    },
    getMany: (keys) => Promise.all(keys.map(read)),
    async keys() {
      return (await names())
        .filter((n) => n.startsWith("k"))
        .map((n) => decodeURIComponent(n.slice(1)))
        .sort();
    },
    async delete(key) {
      await dir.removeEntry(fileName(key)).catch((e) => {
        if (!e || e.name !== "NotFoundError") throw e;
      });
    },
    async clear() {
      await root.removeEntry(dirName, { recursive: true }).catch((e) => {
        if (!e || e.name !== "NotFoundError") throw e;
      });
      dir = await root.getDirectoryHandle(dirName, { create: true });
    },
    async destroy() {
      await root.removeEntry(dirName, { recursive: true }).catch((e) => {
        if (!e || e.name !== "NotFoundError") throw e;
      });
    },
  };
}

export async function openStore(kind, options = {}) {
  const name = options.name || "s08";
  switch (kind) {
    case "localstorage":
      if (typeof localStorage === "undefined") throw unsupported("localStorage is not available here");
      return localStore(name);
    case "indexeddb":
      return rawIndexedDB(name);
    case "idb":
      return idbStore(name, options.idbUrl || "/idb.js");
    case "cacheapi":
      return cacheStore(name, options.version || 1);
    case "memory":
      return memoryStore();
    case "opfs":
      return opfsStore(name);
    default:
      throw new Error(`unknown store kind ${JSON.stringify(kind)}; known: ${KINDS.join(", ")}`);
  }
}
