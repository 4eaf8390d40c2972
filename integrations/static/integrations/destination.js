// The destination form: show the credential inputs and help of the chosen vendor only.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var vendor = document.getElementById("id_vendor");
  if (!vendor) return;
  function show() {
    var chosen = vendor.value;
    document.querySelectorAll(".credentials, .vendor-help").forEach(function (el) {
      el.classList.toggle("one-vendor", chosen !== "");
    });
    document.querySelectorAll("[data-vendor]").forEach(function (el) {
      el.hidden = chosen !== "" && el.dataset.vendor !== chosen;
    });
  }
  vendor.addEventListener("change", show);
  show();
});
