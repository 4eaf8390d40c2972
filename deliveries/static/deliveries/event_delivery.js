// Event Delivery: draw the trends chart and load an issue's samples when asked (the page itself stays small).
(function () {
  "use strict";

  function cssVar(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function drawChart() {
    const canvas = document.getElementById("ed-trends");
    const source = document.getElementById("ed-chart-data");
    if (!canvas || !source || typeof Chart === "undefined") return;
    const data = JSON.parse(source.textContent);
    const text = cssVar("--body-quiet-color", "#666");
    const grid = cssVar("--hairline-color", "#e8e8e8");
    new Chart(canvas, {
      data: {
        labels: data.labels,
        datasets: [
          { type: "bar", label: "Delivered", data: data.delivered, backgroundColor: "#5b9a47", stack: "outcomes", yAxisID: "y", order: 2 },
          { type: "bar", label: "Failed", data: data.failed, backgroundColor: "#ba2121", stack: "outcomes", yAxisID: "y", order: 2 },
          {
            type: "line", label: "p95 latency (ms)", data: data.p95, borderColor: "#417690", backgroundColor: "#417690",
            yAxisID: "latency", spanGaps: true, tension: 0.25, pointRadius: 2, order: 1,
          },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { color: text, boxWidth: 12 } } },
        scales: {
          x: { stacked: true, ticks: { color: text, maxRotation: 0, autoSkip: true, maxTicksLimit: 14 }, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "deliveries", color: text }, ticks: { color: text, precision: 0 }, grid: { color: grid } },
          latency: { position: "right", beginAtZero: true, title: { display: true, text: "p95 ms", color: text }, ticks: { color: text }, grid: { drawOnChartArea: false } },
        },
      },
    });
  }

  function toggleSamples(button) {
    const row = button.closest("tbody").querySelector(".ed-samples-row");
    const box = row.querySelector(".ed-samples");
    const open = button.getAttribute("aria-expanded") === "true";
    if (open) {
      row.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show samples";
      return;
    }
    row.hidden = false;
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide samples";
    if (box.dataset.loaded) return;
    box.textContent = "Loading samples…";
    fetch(button.dataset.url, { credentials: "same-origin", headers: { "X-Requested-With": "XMLHttpRequest" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        box.dataset.loaded = "1";
      })
      .catch(function (error) {
        box.textContent = "The samples could not be loaded (" + error.message + "). Reload the page and try again.";
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawChart();
    document.querySelectorAll(".ed-samples-toggle").forEach(function (button) {
      button.addEventListener("click", function () { toggleSamples(button); });
    });
    document.querySelectorAll("form.ed-retry").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        const count = form.querySelector("[data-count]").dataset.count;
        if (!window.confirm("Send these " + count + " deliveries again now?")) event.preventDefault();
      });
    });
  });
})();
