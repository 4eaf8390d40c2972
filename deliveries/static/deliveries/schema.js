// Schema: draw the volume chart, switch source on change, and open an event's properties under its row.
(function () {
  "use strict";

  // One colour per type, the same on every visit.
  const COLOURS = { track: "#417690", identify: "#5b9a47", page: "#d4a017", screen: "#9c5bb5", group: "#c2603a", alias: "#888888" };

  function cssVar(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function drawChart() {
    const canvas = document.getElementById("sc-volume");
    const source = document.getElementById("sc-chart-data");
    if (!canvas || !source || typeof Chart === "undefined") return;
    const data = JSON.parse(source.textContent);
    const text = cssVar("--body-quiet-color", "#666");
    const grid = cssVar("--hairline-color", "#e8e8e8");
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (s) {
          return { label: s.type, data: s.counts, backgroundColor: COLOURS[s.type] || "#888888", stack: "events" };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { color: text, boxWidth: 12 } } },
        scales: {
          x: { stacked: true, ticks: { color: text, maxRotation: 0, autoSkip: true, maxTicksLimit: 16 }, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "events", color: text }, ticks: { color: text, precision: 0 }, grid: { color: grid } },
        },
      },
    });
  }

  function toggle(link) {
    const body = link.closest("tbody");
    const row = body.querySelector(".sc-props-row");
    const box = row.querySelector(".sc-props-box");
    const open = link.getAttribute("aria-expanded") === "true";
    row.hidden = open;
    link.setAttribute("aria-expanded", open ? "false" : "true");
    body.classList.toggle("open", !open);
    if (open || box.dataset.loaded) return;
    box.textContent = "Loading properties…";
    fetch(link.dataset.url, { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        box.dataset.loaded = "1";
      })
      .catch(function (error) {
        box.textContent = "The properties could not be loaded (" + error.message + "). Reload the page and try again.";
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawChart();
    const picker = document.getElementById("sc-source");
    if (picker) picker.addEventListener("change", function () { picker.form.submit(); });
    document.querySelectorAll("a.sc-open").forEach(function (link) {
      link.addEventListener("click", function (event) {
        if (event.metaKey || event.ctrlKey || event.shiftKey) return; // a new tab gets the whole page
        event.preventDefault();
        toggle(link);
      });
    });
  });
})();
