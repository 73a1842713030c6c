/* Alerts that stay until dismissed, short notices, and announcements for screen readers. */

import { elements } from "./workspace.js";

export function showAlert(text) {
  const alert = document.createElement("div");
  alert.className = "message error ws-alert";
  alert.setAttribute("role", "alert");
  const message = document.createElement("p");
  message.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "btn secondary small";
  dismiss.textContent = "Dismiss";
  dismiss.addEventListener("click", () => alert.remove());
  alert.append(message, dismiss);
  elements.alerts.append(alert);
}

let noticeTimer = null;
export function showNotice(text) {
  // A short-lived confirmation ("Change saved"), also read out by screen readers.
  let notice = elements.alerts.querySelector(".ws-notice");
  if (!notice) {
    notice = document.createElement("div");
    notice.className = "message ws-notice";
    notice.setAttribute("role", "status");
    elements.alerts.prepend(notice);
  }
  notice.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => notice.remove(), 4000);
}

export function announce(text) {
  elements.announce.textContent = text;
}
