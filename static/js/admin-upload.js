// Upload page: send the form with XMLHttpRequest to show upload progress, then follow the
// batch (pending / ready / failed) until no image is pending. Without JavaScript the form posts
// normally and the result page follows the batch the same way.
(function () {
  "use strict";
  function $(id) { return document.getElementById(id); }
  function text(el, value) { el.textContent = value; }
  function mb(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }

  function followBatch(url) {
    var panel = $("batch-status");
    panel.hidden = false;
    panel.dataset.url = url;
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          text($("batch-pending"), s.pending);
          text($("batch-ready"), s.ready);
          text($("batch-failed"), s.failed);
          var bar = $("batch-bar");
          bar.max = Math.max(1, s.total);
          bar.value = s.ready + s.failed + s.deleted;
          var failures = $("batch-failures");
          failures.replaceChildren();
          s.failures.forEach(function (f) {
            var li = document.createElement("li");
            li.textContent = (f.name || "image " + f.id) + ": " + f.reason;
            failures.appendChild(li);
          });
          failures.hidden = !s.failures.length;
          if (s.done) {
            var done = $("batch-done");
            done.hidden = false;
            text(done, s.total ? "Done: " + s.ready + " ready, " + s.failed + " failed." : "Nothing new to index.");
            panel.classList.add("done");
          } else {
            setTimeout(poll, 1000);
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    poll();
  }

  function showResult(data) {
    $("upload-result").hidden = false;
    text($("upload-summary"), "Upload finished: " + data.summary + "." +
      (data.queued ? "" : " Embedding is delayed: the background queue is unreachable."));
    var details = $("upload-details");
    details.replaceChildren();
    function list(title, items, line) {
      if (!items.length) return;
      var h = document.createElement("h3");
      h.textContent = title;
      var ul = document.createElement("ul");
      items.forEach(function (item) {
        var li = document.createElement("li");
        li.textContent = line(item);
        ul.appendChild(li);
      });
      details.appendChild(h);
      details.appendChild(ul);
    }
    list("Refused", data.refused, function (r) { return r.name + ": " + r.reason; });
    list("Already in the library", data.duplicates, function (d) { return d.name + " → image " + d.id; });
  }

  function showErrors(message) {
    var errors = $("upload-errors");
    errors.replaceChildren();
    var li = document.createElement("li");
    li.textContent = message;
    errors.appendChild(li);
    errors.hidden = false;
  }

  var form = $("upload-form");
  if (form && window.FormData && window.XMLHttpRequest) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var submit = $("upload-submit");
      var progress = $("upload-progress");
      var bar = $("upload-bar");
      var status = $("upload-progress-text");
      $("upload-errors").hidden = true;
      progress.hidden = false;
      submit.disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        bar.max = e.total;
        bar.value = e.loaded;
        text(status, Math.round((100 * e.loaded) / e.total) + "% — " + mb(e.loaded) + " of " + mb(e.total));
      });
      xhr.upload.addEventListener("load", function () {
        bar.value = bar.max;
        text(status, "Uploaded; checking and storing the images…");
      });
      xhr.addEventListener("load", function () {
        submit.disabled = false;
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: a proxy or size error */ }
        if (xhr.status >= 200 && xhr.status < 300 && data) {
          progress.hidden = true;
          form.reset();
          showResult(data);
          followBatch(data.status_url);
        } else {
          progress.hidden = true;
          showErrors((data && data.error) || xhr.responseText || "The upload failed (" + xhr.status + ").");
        }
      });
      xhr.addEventListener("error", function () {
        submit.disabled = false;
        progress.hidden = true;
        showErrors("The upload failed: the server could not be reached.");
      });
      xhr.send(new FormData(form));
    });
  }

  var live = $("batch-status");
  if (live && live.dataset.url) followBatch(live.dataset.url);
})();
