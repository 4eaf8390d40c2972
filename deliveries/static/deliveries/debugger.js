// The Debugger: the live tail (poll the feed every second for rows newer than the newest shown), Pause/Live,
// row selection for Replay, the side panel that shows an event's trace, and the Pretty/Raw toggle.
"use strict";
(function () {
  const POLL_MS = 1000;
  const MAX_ROWS = 500; // a tab left live all day keeps the newest rows only

  function setView(detail, view) {
    detail.querySelectorAll(".view-toggle button").forEach((button) => {
      const on = button.dataset.view === view;
      button.classList.toggle("is-on", on);
      button.setAttribute("aria-selected", on ? "true" : "false");
    });
    detail.querySelectorAll(".payload-view").forEach((pane) => { pane.hidden = pane.dataset.view !== view; });
  }

  // Pretty/Raw and Copy work in the page and in the side panel alike.
  document.addEventListener("click", (event) => {
    const toggle = event.target.closest(".view-toggle button");
    if (toggle) {
      setView(toggle.closest(".event-detail"), toggle.dataset.view);
      return;
    }
    const copy = event.target.closest(".copy-raw");
    if (copy) {
      const text = copy.parentElement.querySelector(".raw-json").textContent;
      const done = () => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {  // plain http: select the text so Ctrl+C copies it
        const range = document.createRange();
        range.selectNodeContents(copy.parentElement.querySelector(".raw-json"));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copy.textContent = "Selected: press Ctrl+C";
      }
    }
  });

  const root = document.querySelector(".debugger[data-feed-url]");
  if (!root) return;
  const rows = document.getElementById("debugger-rows");
  const empty = document.getElementById("debugger-empty");
  const toggle = document.getElementById("live-toggle");
  const state = document.getElementById("live-state");
  const replayButton = document.getElementById("replay-selected");
  const selectAll = document.getElementById("select-all");
  const panel = document.getElementById("event-panel");
  const panelBody = document.getElementById("panel-body");
  let newest = Number(root.dataset.newest || 0);
  let live = root.dataset.live === "1";

  function showState() {
    if (!toggle) return;
    toggle.textContent = live ? "Pause" : "Live";
    toggle.classList.toggle("is-live", live);
    toggle.setAttribute("aria-pressed", live ? "true" : "false");
    state.classList.toggle("paused", !live);
    state.querySelector(".text").textContent = live
      ? "Live: new events appear at the top within 2 seconds."
      : "Paused: new events are not shown until you go live again.";
  }

  function feedUrl() {
    const query = root.dataset.feedQuery;
    return `${root.dataset.feedUrl}?${query ? query + "&" : ""}after=${newest}`;
  }

  function addRows(data) {
    newest = Math.max(newest, data.newest);
    if (!data.count) return;
    const template = document.createElement("tbody");
    template.innerHTML = data.html;
    const fresh = Array.from(template.querySelectorAll("tr.event-row"))
      .filter((row) => !rows.querySelector(`tr[data-id="${row.dataset.id}"]`));
    if (data.gap) {
      const gap = document.createElement("tr");
      gap.className = "gap-row";
      gap.innerHTML = `<td colspan="9">More events arrived than shown here: reload the page to see them all.</td>`;
      rows.prepend(gap);
    }
    fresh.reverse().forEach((row) => {
      row.classList.add("fresh");
      rows.prepend(row);
    });
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
    if (empty) empty.hidden = rows.children.length > 0;
  }

  if (toggle) {
    // A dropped connection or an error: asked again on the next tick.
    const feed = window.cdphubPages.poll(feedUrl, (data) => { if (live) addRows(data); }, { every: POLL_MS });
    toggle.addEventListener("click", () => {
      live = !live;
      showState();
      if (live) feed.now(); else feed.stop();
    });
    showState();
  }

  // Selection for Replay.
  function selected() {
    return Array.from(rows.querySelectorAll("input.select-event:checked")).map((box) => box.value);
  }
  function showSelection() {
    if (!replayButton) return;
    const ids = selected();
    replayButton.disabled = ids.length === 0;
    replayButton.textContent = ids.length ? `Replay selected (${ids.length})` : "Replay selected";
  }
  rows.addEventListener("change", showSelection);
  if (selectAll) {
    selectAll.addEventListener("change", () => {
      rows.querySelectorAll("input.select-event").forEach((box) => { box.checked = selectAll.checked; });
      showSelection();
    });
  }
  if (replayButton) {
    replayButton.addEventListener("click", () => {
      const ids = selected();
      if (ids.length) window.location.href = `${root.dataset.replayUrl}?events=${ids.join(",")}`;
    });
  }

  // A row opens the event's trace in the side panel; links and checkboxes keep their own job.
  async function openPanel(row) {
    rows.querySelectorAll("tr.is-open").forEach((open) => open.classList.remove("is-open"));
    row.classList.add("is-open");
    const url = row.dataset.detail;
    document.getElementById("panel-page").href = url;
    panelBody.innerHTML = '<p class="quiet">Loading…</p>';
    panel.hidden = false;
    try {
      const response = await fetch(`${url}?panel=1`, { credentials: "same-origin" });
      panelBody.innerHTML = response.ok ? await response.text() : `<p class="errornote">Could not load the event (HTTP ${response.status}).</p>`;
    } catch (error) {
      panelBody.innerHTML = '<p class="errornote">Could not load the event: the server did not answer.</p>';
    }
  }
  function closePanel() {
    panel.hidden = true;
    rows.querySelectorAll("tr.is-open").forEach((open) => open.classList.remove("is-open"));
  }
  rows.addEventListener("click", (event) => {
    const row = event.target.closest("tr.event-row");
    if (!row || event.target.closest("input, label, td.select")) return;
    const link = event.target.closest("a");
    if (link && (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) return;
    event.preventDefault();
    openPanel(row);
  });
  document.getElementById("panel-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !panel.hidden) closePanel(); });
})();
