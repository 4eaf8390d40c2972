// Replay: the confirmation shows, with each warning, when a destination where sending again has a consequence is
// ticked (an SFMC journey's emails); the progress page polls its counts until done.
(function () {
  "use strict";

  function resendConfirmation(form) {
    const row = form.querySelector(".replay-confirm");
    if (!row) return;
    const warnings = Array.from(row.querySelectorAll("li[data-destination]"));
    const boxes = form.querySelectorAll('input[name="destinations"]');
    const update = () => {
      const ticked = new Set(Array.from(boxes).filter((box) => box.checked).map((box) => box.value));
      warnings.forEach((item) => { item.hidden = !ticked.has(item.dataset.destination); });
      row.hidden = !warnings.some((item) => !item.hidden);
    };
    boxes.forEach((box) => box.addEventListener("change", update));
    update();
  }

  function number(value) {
    return typeof value === "number" ? value.toLocaleString("en") : value;
  }

  function poll(root) {
    const url = root.dataset.progressUrl;
    const bar = document.getElementById("replay-bar");
    const show = (state) => {
      root.querySelectorAll("[data-field]").forEach((el) => {
        const name = el.dataset.field;
        if (name === "paused") {
          el.hidden = !state.paused.length;
          el.textContent = state.paused.length
            ? `Paused or disabled: ${state.paused.join(", ")}. Its deliveries wait until the destination is resumed.`
            : "";
        } else if (name === "error") {
          el.hidden = !state.error;
          el.textContent = state.error;
        } else if (name in state) {
          el.textContent = number(state[name]);
        }
      });
      root.querySelectorAll("[data-nonzero]").forEach((row) => {
        row.classList.toggle("zero", !state[row.dataset.nonzero]);
      });
      bar.value = state.percent;
      root.dataset.status = state.status;
      root.dataset.done = state.done ? "1" : "0";
    };
    // Every second (every 5 while the tab is hidden) until done; while the server restarts, less and less often.
    if (root.dataset.done !== "1") {
      window.cdphubPages.poll(url, (state) => { show(state); return !state.done; }, {
        first: 500, every: 1000, hiddenEvery: 5000, backoff: 15000,
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("replay-form");
    if (form) resendConfirmation(form);
    const progress = document.querySelector(".replay-progress[data-progress-url]");
    if (progress) poll(progress);
  });
})();
