// Spike 4's top page: run each step of window.S04_CONFIG in an iframe served by the feed's own origin, one at a
// time, then hand every step's result to the harness. A step that never answers (its origin did not load, e.g. an
// untrusted TLS certificate, or the page hung) is reported as such after its own deadline: the run always ends.
(function () {
  "use strict";
  var cfg = window.S04_CONFIG || {steps: []};
  var t0 = performance.now();

  function runStep(step) {
    return new Promise(function (resolve) {
      var frame = document.createElement("iframe");
      var done = false;
      var loaded = false;
      var started = performance.now();
      function finish(result) {
        if (done) return;
        done = true;
        clearTimeout(timer);
        window.removeEventListener("message", onMessage);
        frame.remove(); // closes every connection the step still holds before the next step starts
        resolve(result);
      }
      function onMessage(e) {
        var d = e.data;
        if (d && d.s04 === true && d.id === step.id) finish(d.result);
      }
      var timer = setTimeout(function () {
        finish({
          error: "no result within " + step.step_ms + " ms",
          frame_loaded: loaded,
          waited_ms: Math.round(performance.now() - started),
        });
      }, step.step_ms);
      window.addEventListener("message", onMessage);
      frame.addEventListener("load", function () { loaded = true; });
      frame.src = step.base + "/static/s04.html#" + encodeURIComponent(JSON.stringify(step));
      document.body.appendChild(frame);
    });
  }

  (async function () {
    var out = [];
    for (var i = 0; i < cfg.steps.length; i++) {
      var step = cfg.steps[i];
      var result;
      try {
        result = await runStep(step);
      } catch (e) {
        result = {error: String(e)};
      }
      out.push({id: step.id, kind: step.kind, transport: step.transport || null, base: step.base, result: result});
    }
    harnessReport({steps: out, total_ms: Math.round(performance.now() - t0)});
  })();
})();
