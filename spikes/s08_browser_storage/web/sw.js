// Spike 8, the app's service worker: the map image and the app code under /s/<strategy>/asset/, by one of three
// invalidation strategies. The harness serves this file with `self.S08_VERSION = "vN";` in front of it (the app's
// version: a new version is new bytes, so the engine installs the new worker), and the strategy in the query string
// of the worker's URL (/sw.js?strategy=...), one scope per strategy.
//
// - cache-first: a cache named after the version ("s08-cache-first-v2"); a hit is served without asking the network;
//   the new worker's activate deletes the older versions' caches.
// - stale-while-revalidate: the cached copy is served at once and the network's answer replaces it for next time.
// - cache-first-update: the same worker; the page calls registration.update() at every start and, when a new worker
//   comes, waits until it controls the page before loading (the browser's own update check is not timely: see
//   lifecycle.py).
// - network-first: every load asks the server with If-None-Match (the cached copy's ETag): a 304 serves the cached
//   copy, a 200 replaces it; the cached copy is served only when the network fails.
//
// Loaded as a plain script by the page, the same code runs in the page (window.S08Strategy) when an engine has no
// service worker here: the version then comes from GET /version.
"use strict";
(function (g) {
  var inWorker = typeof g.ServiceWorkerGlobalScope !== "undefined" && g instanceof g.ServiceWorkerGlobalScope;
  var PREFIX = "s08-";

  function versioned(strategy) { return strategy.indexOf("cache-first") === 0; }
  function cacheName(strategy, version) {
    return versioned(strategy) ? PREFIX + strategy + "-" + version : PREFIX + strategy;
  }
  function tag(res, via) {
    var h = new Headers(res.headers);
    h.set("X-S08-Via", via);
    return new Response(res.body, {status: res.status, statusText: res.statusText, headers: h});
  }
  function net(req, headers) {
    // no-store: the engine's HTTP cache stays out of it (the strategy is the only cache measured).
    return fetch(req.url, {cache: "no-store", headers: headers || {}});
  }
  async function dropOldVersions(strategy, version) {
    if (!versioned(strategy)) return;
    var mine = new RegExp("^" + PREFIX + strategy + "-v\\d+$");
    var names = await caches.keys();
    await Promise.all(names.filter(function (n) { return mine.test(n) && n !== cacheName(strategy, version); })
      .map(function (n) { return caches.delete(n); }));
  }
  async function handle(strategy, req, version, waitUntil) {
    var cache = await caches.open(cacheName(strategy, version));
    var hit = await cache.match(req);
    var res;
    if (versioned(strategy)) {
      if (hit) return tag(hit, "cache");
      res = await net(req);
      if (res.ok) await cache.put(req, res.clone());
      return tag(res, "network");
    }
    if (strategy === "stale-while-revalidate") {
      var refresh = net(req).then(async function (r) { if (r.ok) await cache.put(req, r.clone()); return r; });
      if (hit) {
        (waitUntil || function (p) { return p; })(refresh.catch(function () { return null; }));
        return tag(hit, "cache");
      }
      return tag(await refresh, "network");
    }
    if (strategy === "network-first") {
      var etag = hit && hit.headers.get("ETag");
      try {
        res = await net(req, etag ? {"If-None-Match": etag} : {});
      } catch (e) {
        if (hit) return tag(hit, "cache (network failed)");
        throw e;
      }
      if (res.status === 304 && hit) return tag(hit, "revalidated");
      if (res.ok) { await cache.put(req, res.clone()); return tag(res, "network"); }
      return hit ? tag(hit, "cache (network " + res.status + ")") : res;
    }
    throw new Error("unknown strategy " + strategy);
  }
  async function timed(strategy, req, version) {
    // The page-side path: the same strategy, timed as the page's own fetch is.
    var t = performance.now();
    await dropOldVersions(strategy, version);
    var res = await handle(strategy, req, version, null);
    var body = new Uint8Array(await res.arrayBuffer());
    var ms = performance.now() - t;
    var head = new TextDecoder().decode(body.subarray(0, Math.min(32, body.length))).split("\n")[0];
    return {ms: ms, status: res.status, bytes: body.length, version: head, via: res.headers.get("X-S08-Via")};
  }

  if (!inWorker) {
    g.S08Strategy = {handle: handle, timed: timed, cacheName: cacheName};
    return;
  }
  var VERSION = g.S08_VERSION || "v0";
  var STRATEGY = new URL(g.location.href).searchParams.get("strategy") || "cache-first";
  g.addEventListener("install", function (e) { e.waitUntil(g.skipWaiting()); });
  g.addEventListener("activate", function (e) {
    e.waitUntil(dropOldVersions(STRATEGY, VERSION).then(function () { return g.clients.claim(); }));
  });
  g.addEventListener("fetch", function (e) {
    if (new URL(e.request.url).pathname.indexOf("/asset/") < 0) return;
    e.respondWith(handle(STRATEGY, e.request, VERSION, function (p) { e.waitUntil(p); }));
  });
})(self);
