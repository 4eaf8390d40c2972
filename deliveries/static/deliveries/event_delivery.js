// Event Delivery: draw the trends chart and load an issue's samples when asked (the page itself stays small).
(function () {
  "use strict";
  const pages = window.cdphubPages;

  function drawChart() {
    pages.drawChart("ed-trends", "ed-chart-data", function (data) {
      return {
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
        options: pages.chartOptions({
          x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 14 }, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, title: { text: "deliveries" }, ticks: { precision: 0 } },
          latency: { position: "right", beginAtZero: true, title: { text: "p95 ms" }, grid: { drawOnChartArea: false } },
        }),
      };
    });
  }

  function toggleSamples(button) {
    const row = button.closest("tbody").querySelector(".ed-samples-row");
    const open = button.getAttribute("aria-expanded") === "true";
    row.hidden = open;
    button.setAttribute("aria-expanded", open ? "false" : "true");
    button.textContent = open ? "Show samples" : "Hide samples";
    if (!open) pages.loadFragment(row.querySelector(".ed-samples"), button.dataset.url, "samples");
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
