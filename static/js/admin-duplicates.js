// Near-duplicates page: show the scan's progress while the worker runs it, say when a newer scan
// has finished (the groups on the page are then out of date), and ask before deleting.
(function () {
  "use strict";
  var page = document.getElementById("duplicates-page");
  if (!page) return;
  var shownNumber = Number(page.dataset.number);
  function el(id) { return document.getElementById(id); }

  function render(s) {
    el("scan-running").hidden = !s.running;
    if (s.running) {
      el("scan-progress").max = Math.max(1, s.total);
      el("scan-progress").value = s.done;
      el("scan-progress-text").textContent = "Scanning: " + s.done + " of " + s.total + " images.";
    }
    el("scan-queued").hidden = !s.queued || s.running;
    el("scan-new").hidden = !(s.number > shownNumber);
    el("scan-error").textContent = s.last_error;
    el("scan-error").hidden = !s.last_error;
  }

  function poll() {
    fetch(page.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) { render(s); setTimeout(poll, s.running || s.queued ? 1000 : 5000); })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);

  document.querySelectorAll(".duplicate-group button[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
})();
