// Schema: draw the volume chart, switch source on change, and open an event's properties under its row.
(function () {
  "use strict";
  const pages = window.cdphubPages;

  // One colour per type, the same on every visit.
  const COLOURS = { track: "#417690", identify: "#5b9a47", page: "#d4a017", screen: "#9c5bb5", group: "#c2603a", alias: "#888888" };

  function drawChart() {
    pages.drawChart("sc-volume", "sc-chart-data", function (data) {
      return {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: data.series.map(function (s) {
            return { label: s.type, data: s.counts, backgroundColor: COLOURS[s.type] || "#888888", stack: "events" };
          }),
        },
        options: pages.chartOptions({
          x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 16 }, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, title: { text: "events" }, ticks: { precision: 0 } },
        }),
      };
    });
  }

  function toggle(link) {
    const body = link.closest("tbody");
    const row = body.querySelector(".sc-props-row");
    const open = link.getAttribute("aria-expanded") === "true";
    row.hidden = open;
    link.setAttribute("aria-expanded", open ? "false" : "true");
    body.classList.toggle("open", !open);
    if (!open) pages.loadFragment(row.querySelector(".sc-props-box"), link.dataset.url, "properties");
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
