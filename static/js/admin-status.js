// Index status page: refresh the figures every few seconds, and ask before the costly actions.
(function () {
  function ago(seconds) {
    var units = [[86400, "day"], [3600, "hour"], [60, "minute"]];
    for (var i = 0; i < units.length; i++) {
      var n = Math.floor(seconds / units[i][0]);
      if (n >= 1) return n + " " + units[i][1] + (n > 1 ? "s" : "") + " ago";
    }
    return Math.round(seconds) + " s ago";
  }
  "use strict";
  var page = document.getElementById("status-page");
  if (!page) return;
  function set(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }
  function size(bytes) {
    if (bytes == null) return "–";
    var units = ["bytes", "KB", "MB", "GB", "TB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  function render(s) {
    set("count-pending", s.counts.pending);
    set("count-ready", s.counts.ready);
    set("count-failed", s.counts.failed);
    set("count-stale", s.stale);
    set("count-labels-outdated", s.labels_outdated);
    set("model", s.model);
    set("text-model", s.text_model);
    set("encoder", s.encoder);
    var int8 = document.getElementById("int8");
    int8.hidden = !s.int8_reason;
    int8.textContent = "int8: " + (s.int8_agreement == null ? "" : "agreement " + s.int8_agreement + ". ") + s.int8_reason;
    var modelError = document.getElementById("model-error");
    modelError.textContent = s.model_error;
    modelError.hidden = !s.model_error;
    set("generation", s.generation == null ? "none built yet" : s.generation);
    set("vectors", s.generation == null ? "–" : s.vectors + " × " + s.dimension);
    set("age", s.age_seconds == null ? "–" : ago(s.age_seconds) +
      (s.last_rebuild_seconds ? " (took " + s.last_rebuild_seconds.toFixed(2) + " s)" : ""));
    set("size", size(s.size_bytes));
    set("kind", s.kind == null ? "–" : s.kind +
      (s.requested_kind && s.requested_kind !== s.kind ? " (chosen by " + s.requested_kind + ")" : "") +
      (s.search_param ? ", " + s.search_param + " " + s.search_param_value : ""));
    function measured(r) { return r == null ? "not measured" : String(r); }
    set("recall", s.kind == null ? "–" : s.kind === "flat" ? "exact" :
      "text queries " + measured(s.recall_text) + ", image queries " + measured(s.recall_image));
    var behind = document.getElementById("behind");
    behind.replaceChildren();
    if (s.behind) {
      var strong = document.createElement("strong");
      strong.textContent = "No: the index is behind the database";
      behind.appendChild(strong);
      if (s.rebuild_queued) behind.appendChild(document.createTextNode(" (a rebuild is queued)"));
    } else {
      behind.textContent = "Yes";
    }
    set("index-error", s.index_error);
    document.getElementById("index-error-row").hidden = !s.index_error;
    var c = s.calibration;
    set("calibration-when", c.calibrated_at == null ? "not yet" :
      c.calibrated_at.slice(0, 10) + " " + c.calibrated_at.slice(11, 16) + " UTC" +
      (c.seconds == null ? "" : " (took " + c.seconds.toFixed(2) + " s)"));
    set("calibration-summary", c.summary);
    set("calibration-error", c.error);
    document.getElementById("calibration-error-row").hidden = !c.error;
    set("live-note", "Updated " + new Date().toLocaleTimeString() + "; this page updates by itself.");
  }

  function poll() {
    fetch(page.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) { render(s); setTimeout(poll, 2000); })
      .catch(function () {
        set("live-note", "Could not refresh the figures; trying again…");
        setTimeout(poll, 5000);
      });
  }
  setTimeout(poll, 2000);

  document.querySelectorAll("#status-actions button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
})();
