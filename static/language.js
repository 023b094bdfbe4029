// Submits the language form when a language is chosen (the page's only script;
// a file of its own, so the Content-Security-Policy needs no inline script).
document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
  select.addEventListener("change", function () { select.form.submit(); });
});
