// Replay: the journey confirmation shows when a journey is ticked; the progress page polls its counts until done.
(function () {
  "use strict";

  function journeyConfirmation(form) {
    const journeys = (form.dataset.journeys || "").split(",").filter(Boolean);
    const row = form.querySelector(".replay-journey");
    if (!row) return;
    const boxes = form.querySelectorAll('input[name="destinations"]');
    const update = () => {
      row.hidden = !Array.from(boxes).some((box) => box.checked && journeys.includes(box.value));
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
    let delay = 1000;
    const tick = () => {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
        .then((state) => {
          show(state);
          delay = 1000;
          if (!state.done) window.setTimeout(tick, document.hidden ? 5000 : delay);
        })
        .catch(() => {
          delay = Math.min(delay * 2, 15000); // the server restarting: try again, less often
          window.setTimeout(tick, delay);
        });
    };
    if (root.dataset.done !== "1") window.setTimeout(tick, 500);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("replay-form");
    if (form) journeyConfirmation(form);
    const progress = document.querySelector(".replay-progress[data-progress-url]");
    if (progress) poll(progress);
  });
})();
