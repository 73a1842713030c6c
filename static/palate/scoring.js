// The scoring page: add and remove response boxes (numbered in order), Ctrl+Enter scores, and after htmx
// swaps in the answer the focus goes to it (the error, or the scores), so a keyboard or screen reader user
// hears what happened. Delegated listeners, because htmx replaces the form with every answer.
(function () {
  "use strict";

  function boxes(form) {
    return Array.from(form.querySelectorAll("[data-response-box]"));
  }

  function renumber(form) {
    const all = boxes(form);
    all.forEach((box, index) => {
      const number = index + 1;
      const label = box.querySelector("[data-response-label]");
      const area = box.querySelector("textarea");
      const error = box.querySelector(".field-error");
      label.textContent = "Response " + number;
      label.htmlFor = area.id = "response-" + number;
      if (error) {
        error.id = "response-" + number + "-error";
        area.setAttribute("aria-describedby", error.id);
      }
      const remove = box.querySelector("[data-remove-response]");
      remove.setAttribute("aria-label", "Remove response " + number);
      remove.disabled = all.length === 1;
    });
    const holder = form.querySelector("[data-response-boxes]");
    const add = form.querySelector("[data-add-response]");
    if (holder && add) add.disabled = all.length >= Number(holder.dataset.max || 64);
  }

  function addBox(form) {
    const template = document.getElementById("response-box-template");
    const holder = form.querySelector("[data-response-boxes]");
    if (!template || !holder) return;
    holder.appendChild(template.content.cloneNode(true));
    renumber(form);
    const all = boxes(form);
    all[all.length - 1].querySelector("textarea").focus();
  }

  function removeBox(form, box) {
    if (boxes(form).length === 1) return;
    const next = box.nextElementSibling || box.previousElementSibling;
    box.remove();
    renumber(form);
    const area = next && next.querySelector("textarea");
    (area || form.querySelector("[data-add-response]")).focus();
  }

  document.addEventListener("click", (event) => {
    const form = event.target.closest && event.target.closest("form.scoring-form");
    if (!form) return;
    if (event.target.closest("[data-add-response]")) addBox(form);
    const remove = event.target.closest("[data-remove-response]");
    if (remove) removeBox(form, remove.closest("[data-response-box]"));
  });

  document.addEventListener("keydown", (event) => {
    const form = event.target.closest && event.target.closest("form.scoring-form");
    if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function settle() {
    const form = document.querySelector("form.scoring-form");
    if (form) renumber(form);
    const answer = document.getElementById("scoring-error") || document.getElementById("scoring-result-title");
    return answer;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const answer = settle();
    if (answer) answer.focus();
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target.id !== "scoring-panel" && !document.getElementById("scoring-panel")) return;
    const answer = settle();
    if (answer) {
      answer.focus({ preventScroll: true });
      answer.scrollIntoView({ block: "nearest" });
    }
  });
})();
