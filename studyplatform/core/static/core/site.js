// Behaviour shared by every page, attached here instead of inline event handlers (the
// Content-Security-Policy runs scripts from this origin's files only):
//   <select data-autosubmit>   submits its form when the choice changes (language pickers);
//   <form data-confirm="...">  asks for confirmation before submitting.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el instanceof HTMLElement && el.hasAttribute("data-autosubmit") && el.form) {
      el.form.submit();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm !== undefined) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    }
  });
})();
