// Forms with data-confirm ask before they submit (delete a project, rotate a key). A file, not inline
// handlers, so the pages' Content-Security-Policy allows scripts from this site only.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
