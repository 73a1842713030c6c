// Read-only fields that hold something to copy (a public link, a new token's secret): selected when they get
// focus, and copied by a button whose data-copy names the field. A file, not inline handlers, so that the
// Content-Security-Policy can forbid every inline script.
(function () {
  "use strict";
  document.addEventListener("focusin", (event) => {
    if (event.target.matches && event.target.matches("input[data-select-on-focus]")) event.target.select();
  });
  // A secret shown once (autofocus) is brought into view, not left below the fold.
  document.addEventListener("DOMContentLoaded", () => {
    const field = document.querySelector("input[data-select-on-focus][autofocus]");
    if (field) field.scrollIntoView({ block: "center" });
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    field.select();
    if (navigator.clipboard) navigator.clipboard.writeText(field.value).then(() => { button.textContent = "Copied"; });
  });
})();
