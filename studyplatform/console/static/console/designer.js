/* Protocol designer: live validation of the YAML editor, a YAML view that follows the section
 * forms, and the participant-preview picker. Works without it: every form also posts normally. */
(function () {
  "use strict";
  var root = document.getElementById("designer");
  if (!root) { return; }
  var validateUrl = root.dataset.validateUrl;
  var canEdit = root.dataset.canEdit === "1";
  var yamlForm = document.getElementById("yaml-form");
  var textarea = yamlForm ? yamlForm.querySelector("textarea") : null;
  var statusEl = document.getElementById("yaml-status");
  var errorsEl = document.getElementById("yaml-errors");
  // True once the researcher typed in the YAML editor: form previews must not overwrite that.
  var yamlDirty = false;

  function csrf(form) {
    var input = (form || document).querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  function showResult(result, source) {
    if (!statusEl) { return; }
    errorsEl.innerHTML = "";
    if (result.valid) {
      statusEl.textContent = root.dataset.msgValid;
      statusEl.className = "ok";
    } else {
      statusEl.textContent = root.dataset.msgInvalid;
      statusEl.className = "bad";
      (result.errors || []).forEach(function (e) {
        var li = document.createElement("li");
        var where = e.line ? root.dataset.msgLine + " " + e.line + ": " : "";
        li.textContent = where + (e.path || "document") + ": " + e.message;
        li.dataset.line = e.line || "";
        errorsEl.appendChild(li);
      });
    }
    statusEl.dataset.source = source;
  }

  var validateYaml = debounce(function () {
    statusEl.textContent = root.dataset.msgChecking;
    statusEl.className = "";
    fetch(validateUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(yamlForm) },
      body: JSON.stringify({ yaml: textarea.value }),
      credentials: "same-origin"
    })
      .then(function (r) { return r.json(); })
      .then(function (result) { showResult(result, "yaml"); })
      .catch(function () { statusEl.textContent = ""; });
  }, 500);

  if (textarea && canEdit) {
    textarea.addEventListener("input", function () {
      yamlDirty = true;
      validateYaml();
    });
  }

  // A section form changed: ask the server what the whole protocol would become (nothing is
  // saved) and show it in the YAML view.
  var previewSection = debounce(function (form) {
    var url = form.action + (form.action.indexOf("?") === -1 ? "?" : "&") + "preview=1";
    fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf(form) },
      body: new FormData(form),
      credentials: "same-origin"
    })
      .then(function (r) { return r.json(); })
      .then(function (result) {
        if (result.form_errors) { return; }  // the field errors appear when the form is saved
        if (result.yaml && textarea && !yamlDirty) { textarea.value = result.yaml; }
        showResult(result, form.dataset.section);
      })
      .catch(function () {});
  }, 600);

  if (canEdit) {
    document.querySelectorAll("form.section-form").forEach(function (form) {
      form.addEventListener("input", function () { previewSection(form); });
      form.addEventListener("change", function () { previewSection(form); });
    });
  }

  var previewForm = document.getElementById("preview-form");
  if (previewForm) {
    previewForm.addEventListener("submit", function () {
      var page = document.getElementById("preview-page");
      // Each option carries its page's URL, rendered with {% url %}.
      previewForm.action = page.options[page.selectedIndex].dataset.url;
    });
  }
})();
