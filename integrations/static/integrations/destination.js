// The destination form: show the credential inputs, help and presets of the chosen vendor only; a preset
// button fills the filter and the mapping, which can still be edited before saving. A function's settings show
// for the chosen function only (and a destination function's inputs for the "function" vendor only).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A destination's vendor, or a source's kind (whose secret inputs and help are grouped the same way).
  // A marketer's page has no vendor input (it is read-only there): the help and presets are its vendor's already.
  var vendor = document.getElementById("id_vendor") || document.getElementById("id_kind");
  function show() {
    var chosen = vendor.value;
    document.querySelectorAll(".credentials, .vendor-help").forEach(function (el) {
      el.classList.toggle("one-vendor", chosen !== "");
    });
    document.querySelectorAll("[data-vendor]").forEach(function (el) {
      el.hidden = chosen !== "" && el.dataset.vendor !== chosen;
    });
    document.querySelectorAll(".form-row.field-function, .form-row.field-function_settings").forEach(function (row) {
      row.hidden = chosen !== "function";  // the vendor, or a source's kind, that runs a function
    });
  }
  if (vendor) {
    vendor.addEventListener("change", show);
    show();
  }
  document.querySelectorAll(".function-settings[data-follows]").forEach(function (box) {
    var select = document.getElementById(box.dataset.follows);
    function showGroup() {
      box.querySelectorAll("[data-function]").forEach(function (group) {
        group.hidden = !select || group.dataset.function !== select.value;
      });
    }
    if (select) select.addEventListener("change", showGroup);
    showGroup();
  });
  document.querySelectorAll("button.preset").forEach(function (button) {
    button.addEventListener("click", function () {
      var filter = document.getElementById("id_filter");
      var mapping = document.getElementById("id_mapping");
      if (filter) filter.value = button.dataset.filter;
      if (mapping) mapping.value = button.dataset.mapping;
    });
  });
});
