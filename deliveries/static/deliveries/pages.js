// What the marketer's pages share: load an HTML fragment into a box, poll a JSON endpoint, and the charts' theme.
// Load it before the page's own script (both deferred): the page scripts find it as window.cdphubPages.
"use strict";
window.cdphubPages = (function () {
  // Fill `box` with the HTML at `url`, once: the box keeps it for the next time it is opened.
  function loadFragment(box, url, what) {
    if (box.dataset.loaded) return;
    box.textContent = "Loading " + what + "…";
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        box.dataset.loaded = "1";
      })
      .catch(function (error) {
        box.textContent = "The " + what + " could not be loaded (" + error.message + "). Reload the page and try again.";
      });
  }

  // Ask for JSON every `every` ms (the first time after `first`) and hand it to `handle`, until `handle` returns
  // false or stop() is called; now() asks at once (and goes on). `url` is a string, or a function for a query that
  // changes. A failed request is asked again at the same pace or, with `backoff` (the longest wait), less and less
  // often (a server restarting); `hiddenEvery` is the pace while the tab is hidden.
  function poll(url, handle, options) {
    const every = options.every;
    let delay = every;
    let timer = null;
    let stopped = false;
    let busy = false;
    function schedule(ms) {
      clearTimeout(timer);
      if (!stopped) timer = setTimeout(tick, ms);
    }
    function tick() {
      if (stopped || busy) return;
      busy = true;
      const address = typeof url === "function" ? url() : url;
      fetch(address, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (data) {
          busy = false;
          delay = every;
          if (stopped || handle(data) === false) return;
          schedule(options.hiddenEvery && document.hidden ? options.hiddenEvery : delay);
        })
        .catch(function () {
          busy = false;
          if (options.backoff) delay = Math.min(delay * 2, options.backoff);
          schedule(delay);
        });
    }
    schedule(options.first === undefined ? every : options.first);
    return {
      stop: function () { stopped = true; clearTimeout(timer); },
      now: function () { stopped = false; clearTimeout(timer); tick(); },
    };
  }

  function cssVar(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  // Chart.js options in the admin's colours (light or dark theme) around the chart's own scales.
  function chartOptions(scales) {
    const text = cssVar("--body-quiet-color", "#666");
    const grid = cssVar("--hairline-color", "#e8e8e8");
    const themed = {};
    Object.keys(scales).forEach(function (name) {
      const scale = scales[name];
      const mine = Object.assign({}, scale, { ticks: Object.assign({ color: text }, scale.ticks) });
      if (!scale.grid) mine.grid = { color: grid };
      if (scale.title) mine.title = Object.assign({ display: true, color: text }, scale.title);
      themed[name] = mine;
    });
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { labels: { color: text, boxWidth: 12 } } },
      scales: themed,
    };
  }

  // Draw a chart on the canvas `canvasId` from the JSON of the script element `dataId`: `build(data)` gives the
  // chart's configuration (its options from chartOptions). Without Chart.js (a static file missing) no chart.
  function drawChart(canvasId, dataId, build) {
    const canvas = document.getElementById(canvasId);
    const source = document.getElementById(dataId);
    if (!canvas || !source || typeof Chart === "undefined") return;
    new Chart(canvas, build(JSON.parse(source.textContent)));
  }

  return { loadFragment: loadFragment, poll: poll, chartOptions: chartOptions, drawChart: drawChart };
})();
