// Plain forms, made a little kinder. A file, not inline handlers, so the pages' Content-Security-Policy
// allows scripts from this site only.
document.addEventListener("submit", function (event) {
  var form = event.target;
  // Forms with data-confirm ask first (delete a project, rotate a key).
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // A metered step can take a while: its button says so and cannot be pressed twice (a second press would
  // only meet the first, still running, under the same idempotency key).
  if (form.classList.contains("step") || form.id === "new-project") {
    form.setAttribute("aria-busy", "true");
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.disabled = true;
      button.textContent = "Working… (this step is being written)";
    });
  }
});
