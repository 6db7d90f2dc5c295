// The search box: words, an image (picked, dropped anywhere on the page, or pasted), or both
// with a weight slider. Plain JavaScript, no build step; without it the form still works.
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  if (!form) return;
  var q = document.getElementById("q");
  var input = document.getElementById("image");
  var box = document.getElementById("query-image");
  var preview = document.getElementById("query-image-preview");
  var clear = document.getElementById("image-clear");
  var weight = document.getElementById("weight");
  var slider = document.getElementById("w");
  var out = document.getElementById("w-value");
  var status = document.getElementById("search-status");
  var overlay = document.getElementById("drop-overlay");
  var PREVIEW = "imagesearch.preview.";
  // A picture this browser cannot show: the generic one stands in.
  var GENERIC = preview.src;
  preview.addEventListener("error", function () { if (preview.src !== GENERIC) preview.src = GENERIC; });
  // What the server accepts, from the file picker's own attribute: MIME types and extensions.
  var ACCEPTED = input.accept.toLowerCase().split(",");
  var FORMATS = input.dataset.formats;

  function say(text) { status.textContent = text; }
  // A browser that does not know a format gives its files no type: the name's
  // extension decides then.
  function accepted(file) {
    var type = (file.type || "").toLowerCase();
    var dot = file.name.lastIndexOf(".");
    var ext = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
    return (type && ACCEPTED.indexOf(type) >= 0) || (!!ext && ACCEPTED.indexOf(ext) >= 0);
  }
  function qimgField() { return form.querySelector("input[name=qimg]"); }
  function hasImage() { return input.files.length > 0 || !!qimgField(); }
  function updateWeight() { weight.hidden = !(hasImage() && q.value.trim()); }
  function loading(text) { form.classList.add("is-loading"); say(text); }

  // The server keeps only the query image's vector; keep a small preview for its result pages.
  function keepPreview(file, done) {
    var url = URL.createObjectURL(file);
    var img = new Image();
    img.onload = function () {
      try {
        var scale = 96 / Math.max(img.naturalWidth, img.naturalHeight, 1);
        var canvas = document.createElement("canvas");
        canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
        canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
        canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
        sessionStorage.setItem(PREVIEW + "pending", canvas.toDataURL("image/jpeg", 0.8));
      } catch (e) { /* storage full or disabled: no preview, nothing else lost */ }
      URL.revokeObjectURL(url);
      done();
    };
    img.onerror = function () { URL.revokeObjectURL(url); done(); };
    img.src = url;
  }

  function submit() {
    if (input.files.length) {
      form.method = "post";
      form.enctype = "multipart/form-data";
      loading("Uploading the image and searching…");
      keepPreview(input.files[0], function () { form.submit(); });
      return;
    }
    // No new file: a plain GET, so the results page is a link that can be shared and reloaded.
    form.method = "get";
    input.disabled = true;
    form.querySelectorAll("input[name=csrfmiddlewaretoken]").forEach(function (el) { el.disabled = true; });
    slider.disabled = weight.hidden;
    loading("Searching…");
    form.submit();
  }

  function useFile(file) {
    if (!file) return;
    if (!accepted(file)) {
      say("That file is not an image the search can read (" + FORMATS + ").");
      return;
    }
    var transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    var old = qimgField();
    if (old) old.remove();
    preview.src = URL.createObjectURL(file);
    box.hidden = false;
    updateWeight();
    submit();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!q.value.trim() && !hasImage()) {
      say("Type a few words, or choose an image.");
      q.focus();
      return;
    }
    submit();
  });
  input.addEventListener("change", function () { if (input.files.length) useFile(input.files[0]); });
  q.addEventListener("input", updateWeight);
  slider.addEventListener("input", function () { out.value = slider.value; });
  slider.addEventListener("change", function () { if (q.value.trim() && hasImage()) submit(); });
  // The emphasis slider: untouched, it sends nothing (the stored hybrids rank); moved, it asks
  // again with its value.
  var alpha = document.getElementById("alpha");
  var alphaOut = document.getElementById("alpha-value");
  if (alpha) {
    var emphasisText = function () {
      var percent = Math.round(alpha.value * 100);
      return percent === 100 ? "looks like" : percent === 0 ? "labelled as" : percent + " % picture";
    };
    alpha.addEventListener("input", function () {
      alphaOut.value = emphasisText();
      alpha.setAttribute("aria-valuetext", alphaOut.value);
    });
    alpha.addEventListener("change", function () {
      // The same query (its GET address keeps every part of it), first page, this emphasis.
      var params = new URLSearchParams((form.dataset.url || "?").slice(1));
      params.set("alpha", alpha.value);
      params.delete("page");
      loading("Searching…");
      window.location.href = form.action + "?" + params.toString();
    });
  }
  // "Good matches only": the same query again with the cut-off on or off.
  var good = document.getElementById("good");
  if (good) {
    good.addEventListener("change", function () {
      var params = new URLSearchParams((form.dataset.url || "?").slice(1));
      params.delete("good");
      params.delete("min_precision");
      params.delete("page");
      if (good.checked) params.set("good", "1");
      loading("Searching…");
      window.location.href = form.action + "?" + params.toString();
    });
  }
  clear.addEventListener("click", function () {
    input.value = "";
    var old = qimgField();
    if (old) old.remove();
    box.hidden = true;
    updateWeight();
    say("Image removed.");
    if (q.value.trim()) submit();
    else if (old) window.location.href = form.action;
    else q.focus();
  });

  document.addEventListener("paste", function (event) {
    var files = event.clipboardData && event.clipboardData.files;
    if (files && files.length) {
      event.preventDefault();
      useFile(files[0]);
    }
  });
  function dragsFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0;
  }
  document.addEventListener("dragover", function (event) {
    if (!dragsFiles(event)) return;
    event.preventDefault();
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", function (event) {
    if (!event.relatedTarget) overlay.hidden = true;
  });
  document.addEventListener("drop", function (event) {
    overlay.hidden = true;
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    useFile(event.dataTransfer.files[0]);
  });
  // Coming back through the browser history: the page is not loading any more.
  window.addEventListener("pageshow", function () {
    form.classList.remove("is-loading");
    input.disabled = false;
    slider.disabled = false;
  });

  var token = form.dataset.qimg;
  if (token) {
    try {
      var pending = sessionStorage.getItem(PREVIEW + "pending");
      if (pending && !sessionStorage.getItem(PREVIEW + token)) {
        sessionStorage.setItem(PREVIEW + token, pending);
        sessionStorage.removeItem(PREVIEW + "pending");
      }
      var kept = sessionStorage.getItem(PREVIEW + token);
      if (kept) preview.src = kept;
    } catch (e) { /* no storage: a generic picture stands in */ }
    // The results of an uploaded image came back from a POST: show their GET address instead,
    // so that reloading or sharing the page does not upload again.
    if (form.dataset.url && window.location.search.indexOf("qimg=") < 0) {
      history.replaceState(null, "", form.action + form.dataset.url);
    }
  }
  updateWeight();
})();
