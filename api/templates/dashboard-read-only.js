// adamtune serves the Optuna dashboard read-only: jobs are created, changed and cancelled
// through /v1, and the server refuses the dashboard's writes (405). Say so at the top of the
// page, and hide the controls that would only get that refusal.
(function () {
  "use strict";
  var WRITES = [
    "Create", "Create Study", "Delete", "Delete study", "Delete artifact", "Rename",
    "Copy study", "Fail", "Fail Trial", "Complete", "Skip", "Upload", "Upload artifact",
    "Edit", "Save", "Remove"
  ];
  var BANNER_ID = "adamtune-read-only";

  function isWrite(element) {
    var text = (element.textContent || "").trim();
    var label = (element.getAttribute("aria-label") || "").trim();
    return WRITES.indexOf(text) >= 0 || WRITES.indexOf(label) >= 0;
  }

  function hideWrites(root) {
    root.querySelectorAll("button, [role=menuitem], [role=button]").forEach(function (el) {
      if (el.style.display !== "none" && isWrite(el)) {
        el.style.display = "none";
        el.setAttribute("data-adamtune-hidden", "read-only");
      }
    });
  }

  function banner() {
    if (document.getElementById(BANNER_ID)) { return; }
    var note = document.createElement("div");
    note.id = BANNER_ID;
    note.setAttribute("role", "note");
    note.textContent = "Read-only: adamtune's studies are created, changed and cancelled " +
      "as jobs through the API (/v1/jobs), not here.";
    note.style.cssText = "padding:6px 12px;background:#fff4e5;color:#663c00;" +
      "font:14px sans-serif;border-bottom:1px solid #ffd59e";
    document.body.insertBefore(note, document.body.firstChild);
  }

  function start() {
    banner();
    hideWrites(document);
    new MutationObserver(function () { hideWrites(document); })
      .observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
