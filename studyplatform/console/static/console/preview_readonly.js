// The console's participant preview (console/views_design.py preview_view) is read-only: nothing
// on the page may be submitted.
(function () {
  "use strict";
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.querySelectorAll("input, select, textarea, button").forEach(function (el) {
      el.disabled = true;
    });
  });
})();
