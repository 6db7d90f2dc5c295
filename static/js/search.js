// Show that an image query is uploading; submit as soon as a file is picked.
(function () {
  var form = document.getElementById("image-search");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var loading = document.getElementById("loading");
  form.addEventListener("submit", function () { if (loading) loading.hidden = false; });
  input.addEventListener("change", function () {
    if (input.files.length) { if (loading) loading.hidden = false; form.submit(); }
  });
})();
