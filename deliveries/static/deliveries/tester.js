/* Event Tester: keep the form builder and the JSON in step, default the source to the destination's,
   page through the exchanges of a test send, and poll its result until it is delivered or failed. */
"use strict";
(function () {
  const ROWS_OF = { track: "properties", page: "properties", screen: "properties", identify: "traits", group: "traits", alias: "traits" };
  const NAME_OF = { track: "event", page: "name", screen: "name" };

  function $(id) { return document.getElementById(id); }

  function parseValue(text) {
    // Values are JSON when they parse (49.5, true, {"a": 1}), else text.
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  function showValue(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function addRow(key, value) {
    const row = document.createElement("tr");
    row.innerHTML = '<td><input type="text" class="b-key" aria-label="Key"></td>' +
      '<td><input type="text" class="b-value" aria-label="Value"></td>' +
      '<td><button type="button" class="b-remove" title="Remove this row" aria-label="Remove this row">×</button></td>';
    row.querySelector(".b-key").value = key || "";
    row.querySelector(".b-value").value = value === undefined ? "" : showValue(value);
    $("b-rows").appendChild(row);
    return row;
  }

  function currentObject() {
    try {
      const value = JSON.parse($("tester-payload").value);
      return value && typeof value === "object" && !Array.isArray(value) ? value : null;
    } catch (e) { return null; }
  }

  function labelsFor(type) {
    const nameField = NAME_OF[type];
    // identify, group and alias have no name: the row goes away rather than keep a stale value.
    $("b-name").hidden = $("b-name-label").hidden = !nameField;
    $("b-name-label").textContent = nameField === "event" ? "Event name" : "Name";
    $("b-rows-title").textContent = ROWS_OF[type] === "traits" ? "Traits" : "Properties";
  }

  function fromJSON() {
    const obj = currentObject();
    const state = $("tester-json-state");
    if (!obj) {
      state.textContent = "Not valid JSON yet: the form follows once it parses.";
      state.classList.add("error");
      return;
    }
    state.textContent = "The event as a Segment-spec call; the form and this text follow each other.";
    state.classList.remove("error");
    const type = ROWS_OF[obj.type] ? obj.type : "track";
    $("b-type").value = type;
    labelsFor(type);
    $("b-name").value = NAME_OF[type] && typeof obj[NAME_OF[type]] === "string" ? obj[NAME_OF[type]] : "";
    $("b-user").value = obj.userId == null ? "" : String(obj.userId);
    $("b-anon").value = obj.anonymousId == null ? "" : String(obj.anonymousId);
    $("b-rows").innerHTML = "";
    const rows = obj[ROWS_OF[type]];
    if (rows && typeof rows === "object" && !Array.isArray(rows)) {
      Object.keys(rows).forEach(function (key) { addRow(key, rows[key]); });
    }
  }

  function toJSON() {
    const obj = currentObject() || {};
    const type = $("b-type").value;
    labelsFor(type);
    obj.type = type;
    delete obj.event;
    if (type !== "page" && type !== "screen") delete obj.name;
    const name = $("b-name").value;
    if (NAME_OF[type] && name) obj[NAME_OF[type]] = name;
    [["userId", "b-user"], ["anonymousId", "b-anon"]].forEach(function (pair) {
      const value = $(pair[1]).value;
      if (value) obj[pair[0]] = value; else delete obj[pair[0]];
    });
    const rows = {};
    document.querySelectorAll("#b-rows tr").forEach(function (row) {
      const key = row.querySelector(".b-key").value.trim();
      if (key) rows[key] = parseValue(row.querySelector(".b-value").value);
    });
    delete obj.properties;
    delete obj.traits;
    obj[ROWS_OF[type]] = rows;
    $("tester-payload").value = JSON.stringify(obj, null, 2);
    $("tester-json-state").classList.remove("error");
  }

  function setUpBuilder() {
    const builder = $("tester-builder");
    if (!builder) return;
    builder.hidden = false;
    fromJSON();
    ["b-type", "b-name", "b-user", "b-anon"].forEach(function (id) { $(id).addEventListener("input", toJSON); });
    $("b-type").addEventListener("change", toJSON);
    $("b-rows").addEventListener("input", toJSON);
    $("b-rows").addEventListener("click", function (event) {
      if (event.target.classList.contains("b-remove")) {
        event.target.closest("tr").remove();
        toJSON();
      }
    });
    $("b-add").addEventListener("click", function () { addRow("", "").querySelector(".b-key").focus(); });
    $("tester-payload").addEventListener("input", fromJSON);
  }

  function setUpSourceDefault() {
    const destination = $("tester-destination");
    if (!destination) return;
    destination.addEventListener("change", function () {
      const option = destination.options[destination.selectedIndex];
      const first = option && option.dataset.firstSource;
      if (first) $("tester-source").value = first;
    });
  }

  function show(pager, index) {
    const pages = pager.querySelectorAll(".exchange-page");
    index = Math.max(0, Math.min(index, pages.length - 1));
    pages.forEach(function (page, i) { page.hidden = i !== index; });
    pager.dataset.index = String(index);
    pager.querySelector(".pager-current").textContent = String(index + 1);
    pager.querySelector(".pager-prev").disabled = index === 0;
    pager.querySelector(".pager-next").disabled = index === pages.length - 1;
  }

  function setUpPagers(root) {
    root.querySelectorAll(".exchange-pager").forEach(function (pager) { show(pager, 0); });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest(".pager-prev, .pager-next");
    if (!button) return;
    const pager = button.closest(".exchange-pager");
    const index = Number(pager.dataset.index || 0);
    show(pager, button.classList.contains("pager-next") ? index + 1 : index - 1);
  });

  // A test send's panel follows its result until the delivery is done, for two minutes at most.
  function follow(panel) {
    if (!panel || panel.dataset.done !== "0") return;
    let current = panel;
    const poller = window.cdphubPages.poll(panel.dataset.resultUrl, function (data) {
      const holder = document.createElement("div");
      holder.innerHTML = data.html;
      const fresh = holder.firstElementChild;
      current.replaceWith(fresh);
      current = fresh;
      setUpPagers(fresh);
      if (fresh.dataset.done === "0") return true;
      clearTimeout(giveUp);
      return false;
    }, { every: 600 });
    const giveUp = setTimeout(function () {
      poller.stop();
      current.querySelector(".sending").textContent = "Still sending after 2 minutes: is a worker running? Reload to look again.";
    }, 120000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpBuilder();
    setUpSourceDefault();
    setUpPagers(document);
    follow($("tester-sent"));
  });
})();
