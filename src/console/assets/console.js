// Progressive enhancement only: every page works without this file.
// Buttons of a submitted form are disabled (no double refresh), and the
// filter selects of the account list apply when changed.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  window.setTimeout(function () {
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.disabled = true;
      if (button.dataset.busy) { button.textContent = button.dataset.busy; }
    });
  }, 0);
});
document.querySelectorAll("form.filters select").forEach(function (select) {
  select.addEventListener("change", function () { select.form.requestSubmit(); });
});
