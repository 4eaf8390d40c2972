// A function's page: settings declared as rows (add, remove), a new function's starter code following its kind,
// and Run test: an event picked from the Debugger or pasted (a webhook body for a source function), one input per
// declared setting (secret ones as passwords, never filled in by the page), the code in the editor posted as it
// is, and the result shown under it with the error's line marked in the editor.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const panel = document.getElementById("run-test");
  const form = document.getElementById("run-test-form");
  const kindSelect = document.getElementById("id_kind");
  const declarationBox = document.querySelector(".declaration");
  const codeArea = document.getElementById("id_code");
  const settingsBox = document.getElementById("run-settings");

  function editorOf(textarea) {
    if (!textarea) return null;
    if (!textarea.cdphubEditor && window.CdphubEditor) window.CdphubEditor.attach(textarea);
    return textarea.cdphubEditor || null;
  }
  function textOf(textarea) {
    const editor = editorOf(textarea);
    return editor ? editor.getValue() : textarea ? textarea.value : "";
  }
  function kind() {
    return kindSelect ? kindSelect.value : panel ? panel.dataset.kind : "destination";
  }

  // The settings declaration: rows of inputs; a new row from the <template>, numbered after the last.
  function declared() {
    if (!declarationBox) return panel ? JSON.parse(panel.dataset.declaration || "[]") : [];
    return Array.from(declarationBox.querySelectorAll("tbody tr.declaration-row")).map(function (row) {
      const field = function (key) { return row.querySelector('[name$="-' + key + '"]'); };
      return {
        name: field("name").value.trim(),
        label: field("label").value.trim(),
        type: field("type").value,
        description: field("description").value.trim(),
        required: field("required").checked,
        sensitive: field("sensitive").checked,
      };
    }).filter(function (item) { return item.name; });
  }
  if (declarationBox) {
    const body = declarationBox.querySelector("tbody");
    const template = declarationBox.querySelector("template.declaration-template");
    declarationBox.querySelector(".declaration-add").addEventListener("click", function () {
      const next = Math.max(-1, ...Array.from(body.querySelectorAll('input[name$="-name"]')).map(function (input) {
        return parseInt(input.name.split("-").slice(-2)[0], 10);
      })) + 1;
      body.insertAdjacentHTML("beforeend", template.innerHTML.replace(/__index__/g, String(next)));
      body.lastElementChild.querySelector('input[name$="-name"]').focus();
      settingInputs();
    });
    body.addEventListener("click", function (event) {
      const button = event.target.closest(".declaration-remove");
      if (!button) return;
      button.closest("tr").remove();
      settingInputs();
    });
    body.addEventListener("input", settingInputs);
    body.addEventListener("change", settingInputs);
  }

  // A new function's starter code follows its kind while it has not been edited.
  if (kindSelect && kindSelect.dataset.starters && codeArea) {
    const starters = JSON.parse(kindSelect.dataset.starters);
    kindSelect.addEventListener("change", function () {
      const editor = editorOf(codeArea);
      const current = textOf(codeArea);
      const untouched = Object.values(starters).some(function (code) { return code.trim() === current.trim(); });
      if (untouched && starters[kind()] && editor) editor.setValue(starters[kind()]);
    });
  }

  if (!panel || !form) return;

  function showForKind() {
    panel.querySelectorAll(".run-for").forEach(function (row) {
      row.hidden = row.dataset.kinds.split(" ").indexOf(kind()) < 0;
    });
  }
  if (kindSelect) kindSelect.addEventListener("change", showForKind);
  showForKind();

  // One input per declared setting, redrawn only when the declaration changes; an input whose setting is still
  // declared the same way is kept as it is (its value, and the focus when someone is typing in it).
  let drawn = null;
  function settingInputs() {
    if (!settingsBox) return;
    const items = declared();
    const signature = JSON.stringify(items.map(function (i) { return [i.name, i.type, i.sensitive, i.required]; }));
    if (signature === drawn) return;
    drawn = signature;
    const kept = {};
    settingsBox.querySelectorAll("input, textarea").forEach(function (input) { kept[input.name] = input; });
    settingsBox.textContent = "";
    if (!items.length) {
      settingsBox.innerHTML = '<span class="quiet">This function declares no settings.</span>';
      return;
    }
    items.forEach(function (item) {
      const name = (item.sensitive ? "secret." : "setting.") + item.name;
      const id = "run-" + name.replace(/[^A-Za-z0-9_-]/g, "-");
      const multiline = !item.sensitive && (item.type === "text" || item.type === "array" || item.type === "text_map");
      const type = item.sensitive ? "password" : item.type === "boolean" ? "checkbox" : multiline ? "textarea" : "text";
      let input = kept[name] && (kept[name].type === type) ? kept[name] : null;
      if (!input) {
        input = document.createElement(multiline ? "textarea" : "input");
        if (multiline) {
          input.rows = 2;
          input.placeholder = item.type === "array" ? "One item per line" : item.type === "text_map" ? "One key: value per line" : "";
        } else {
          input.type = type;
          if (item.sensitive) input.autocomplete = "new-password";
          if (type !== "checkbox") input.className = "vTextField";
        }
        input.name = name;
        input.id = id;
        input.setAttribute("form", "run-test-form");
      }
      const label = document.createElement("label");
      label.htmlFor = input.id;
      label.textContent = item.name + ":";
      const note = document.createElement("span");
      note.className = "run-setting-note";
      note.textContent = [item.type || "string", item.sensitive ? "secret" : "", item.required ? "required" : ""]
        .filter(Boolean).join(", ");
      settingsBox.append(label, input, note);
    });
  }
  settingInputs();

  // Events from the Debugger: the newest, or those the search finds.
  const search = document.getElementById("run-event-search");
  const pick = document.getElementById("run-event-pick");
  const payloads = new Map();
  function loadEvents() {
    const url = panel.dataset.eventsUrl + "?q=" + encodeURIComponent(search.value.trim());
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
      payloads.clear();
      pick.length = 1;
      (data.events || []).forEach(function (event) {
        payloads.set(String(event.id), event.payload);
        pick.add(new Option(event.label, event.id));
      });
      pick.options[0].textContent = data.events && data.events.length
        ? "Pick one of " + data.events.length + " recent events…" : "No event found";
    });
  }
  if (search && pick && panel.dataset.eventsUrl) {
    let timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(loadEvents, 250);
    });
    pick.addEventListener("change", function () {
      if (!payloads.has(pick.value)) return;
      const text = JSON.stringify(payloads.get(pick.value), null, 2);
      const editor = editorOf(document.getElementById("run-event"));
      if (editor) editor.setValue(text); else document.getElementById("run-event").value = text;
    });
    loadEvents();
  }

  // Run: the code as it is in the editor, the declaration as the rows say; the answer replaces the result.
  const result = document.getElementById("run-test-result");
  const state = document.getElementById("run-state");
  const button = document.getElementById("run-test-button");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const data = new FormData(form);
    data.set("code", textOf(codeArea));
    data.set("kind", kind());
    data.set("declaration", JSON.stringify(declared()));
    button.disabled = true;
    state.textContent = "Running…";
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () {
          throw new Error("The test could not run (HTTP " + response.status + ").");
        });
      })
      .then(function (answer) {
        result.innerHTML = answer.html || "";
        state.textContent = answer.errors ? "" : "Ran " + (answer.handler || "nothing") + ".";
        const editor = editorOf(codeArea);
        if (editor && answer.marker) editor.showError(answer.marker.line, answer.marker.column, answer.marker.message);
        else if (editor && !answer.errors) editor.clearError();
      })
      .catch(function (error) { state.textContent = error.message; })
      .finally(function () { button.disabled = false; });
  });
});
