// The frame-time collector: rAF intervals after a warm-up, the JS time of each frame's callback (main-thread
// script time), long-animation-frame entries, and the JS heap (performance.memory, precise with
// --enable-precise-memory-info). Engines without an API report null for it, never zero.

const loaf = [];
let observing = false;

export function observeLongFrames() {
  if (observing) return true;
  try {
    if (!(PerformanceObserver.supportedEntryTypes || []).includes('long-animation-frame')) return false;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        loaf.push({
          start: e.startTime,
          duration: e.duration,
          blocking: e.blockingDuration,
          render: e.renderStart ? e.startTime + e.duration - e.renderStart : 0,
          styleLayout: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0,
          script: (e.scripts || []).reduce((a, s) => a + s.duration, 0),
        });
      }
    }).observe({ type: 'long-animation-frame', buffered: true });
    observing = true;
  } catch (e) {
    return false;
  }
  return true;
}

export function heap() {
  const m = performance.memory;
  return m ? { used: m.usedJSHeapSize, total: m.totalJSHeapSize } : null;
}

/** Run ``onFrame(t)`` in every animation frame for ``warmupMs`` then ``windowMs``; the measured window's frames. */
export function measure({ warmupMs, windowMs, onFrame }) {
  return new Promise((resolve, reject) => {
    const intervals = [], script = [];
    let start = null, last = null, measuring = false, t0 = 0, wallStart = 0;
    function tick(ts) {
      try {
        if (start === null) start = ts;
        const a = performance.now();
        onFrame(ts - start);
        const b = performance.now();
        if (measuring) {
          intervals.push(ts - last);
          script.push(b - a);
        } else if (ts - start >= warmupMs) {
          measuring = true;
          t0 = ts;
          wallStart = Date.now();
        }
        last = ts;
        if (measuring && ts - t0 >= windowMs) {
          const long = loaf.filter((e) => e.start >= t0 && e.start <= ts);
          resolve({ intervals, script, windowMs: ts - t0, loaf: long, wallStart, wallEnd: Date.now() });
          return;
        }
        requestAnimationFrame(tick);
      } catch (e) {
        reject(e);
      }
    }
    requestAnimationFrame(tick);
  });
}

/** The page's timer resolution (the smallest step of performance.now() seen), in ms; Firefox rounds to 1 ms. */
export function clockStep() {
  let min = Infinity, a = performance.now();
  const stop = a + 50;
  for (let seen = 0; seen < 200; ) {
    const b = performance.now();
    if (b > a) { min = Math.min(min, b - a); a = b; seen++; }
    if (b > stop) break;
  }
  return Number.isFinite(min) ? min : null;
}
