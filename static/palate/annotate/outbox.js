/* The outbox: judgments, skips and flags waiting to be sent.
 *
 * Each goes into the outbox (memory and localStorage) before anything is sent, and is sent in the background
 * with its own Idempotency-Key, so a network failure or a reload loses nothing and never stores a judgment
 * twice. */

import { showAlert } from "./alerts.js";
import { RETRY_DELAYS_MS, errorMessage, request } from "./requests.js";
import { config, elements } from "./workspace.js";

const OUTBOX_KEY = `palate:outbox:${config.project}:${config.user}`;

function newIdempotencyKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  // randomUUID needs a secure context; getRandomValues does not.
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

let memoryOutbox = [];

export function outboxRead() {
  try {
    const raw = window.localStorage.getItem(OUTBOX_KEY);
    if (raw !== null) return JSON.parse(raw);
    return memoryOutbox.length ? memoryOutbox.slice() : [];
  } catch (_error) {
    return memoryOutbox.slice();
  }
}

function outboxWrite(items) {
  memoryOutbox = items.slice();
  try {
    if (items.length) window.localStorage.setItem(OUTBOX_KEY, JSON.stringify(items));
    else window.localStorage.removeItem(OUTBOX_KEY);
  } catch (_error) {
    /* storage full or disabled: the memory copy still holds it for this page */
  }
  renderOutboxStatus();
}

/** Queues a judgment, a skip or a flag (`kind`) for `pair`, to be POSTed to `url`; send it with flush(). */
export function outboxAdd({ kind, url, pair, body }) {
  const item = { key: newIdempotencyKey(), kind, url, pair, body, createdAt: new Date().toISOString() };
  outboxWrite([...outboxRead(), item]);
}

function outboxRemove(key) {
  outboxWrite(outboxRead().filter((item) => item.key !== key));
}

let flushing = null;
let retryTimer = null;
let retryAttempt = 0;
let signedOut = false;
let settleWaiters = [];
let judgmentsStored = 0; // judgments the server confirmed as new while this page was open
let sentListener = () => {};

/** Judgments the server confirmed as new while this page was open. */
export function judgmentsStoredCount() {
  return judgmentsStored;
}

/** Calls `listener` each time the server takes an item. */
export function onSent(listener) {
  sentListener = listener;
}

function scheduleRetry() {
  clearTimeout(retryTimer);
  const delay = RETRY_DELAYS_MS[Math.min(retryAttempt, RETRY_DELAYS_MS.length - 1)];
  retryAttempt += 1;
  retryTimer = setTimeout(flush, delay * (0.8 + Math.random() * 0.4));
}

export function flush() {
  if (flushing) return flushing;
  clearTimeout(retryTimer);
  flushing = (async () => {
    try {
      for (;;) {
        const items = outboxRead();
        if (!items.length) {
          retryAttempt = 0;
          return;
        }
        const item = items[0];
        let response;
        try {
          response = await request("POST", item.url, item.body, item.kind === "judgment" ? { "Idempotency-Key": item.key } : {});
        } catch (_networkError) {
          scheduleRetry();
          return;
        }
        if (response.ok) {
          retryAttempt = 0;
          signedOut = false;
          // 201, or 200 when an earlier try was stored but its answer never arrived.
          if (item.kind === "judgment") judgmentsStored += 1;
          outboxRemove(item.key);
          sentListener();
          continue;
        }
        if (response.status >= 500 || response.status === 408 || response.status === 429) {
          scheduleRetry();
          return;
        }
        if (response.status === 401 || response.status === 403) {
          // Most likely the session ended. Keep everything and try again now and then: logging in
          // again in another tab lets these through.
          signedOut = true;
          retryAttempt = RETRY_DELAYS_MS.length - 1;
          scheduleRetry();
          return;
        }
        // 400, 404, 409: the server will never take this one. Say so; do not retry it forever.
        const message = await errorMessage(response);
        outboxRemove(item.key);
        if (item.kind === "judgment") {
          showAlert(`Your judgment on pair ${item.pair} was not saved: ${message}.`);
        } else if (item.kind === "flag") {
          showAlert(`Your report on pair ${item.pair} did not go through: ${message}.`);
        } else if (response.status !== 409) {
          showAlert(`Skipping pair ${item.pair} did not go through: ${message}.`);
        } // a 409 on a skip means it was already skipped (or judged): nothing to tell
      }
    } finally {
      flushing = null;
      renderOutboxStatus();
      settleWaiters = settleWaiters.filter((check) => !check());
    }
  })();
  return flushing;
}

/** Resolves once nothing is waiting to be sent (so the server knows everything this page did). */
export function outboxSettled() {
  return new Promise((resolve) => {
    const check = () => {
      if (outboxRead().length) return false;
      resolve();
      return true;
    };
    if (check()) return;
    settleWaiters.push(check);
    flush();
  });
}

export function renderOutboxStatus() {
  const waiting = outboxRead().filter((item) => item.kind === "judgment").length;
  const status = elements.outboxStatus;
  if (!waiting) {
    status.hidden = true;
    status.textContent = "";
    return;
  }
  status.hidden = false;
  const noun = waiting === 1 ? "1 judgment" : `${waiting} judgments`;
  status.textContent = signedOut
    ? `${noun} waiting: you seem to be logged out. Log in again in another tab; nothing is lost.`
    : `${noun} waiting to be sent`;
  status.classList.toggle("problem", signedOut);
}

/** Sends as soon as the network is back, and shows what another tab of this page queued. */
export function outboxWatch() {
  window.addEventListener("online", () => flush());
  window.addEventListener("storage", (event) => {
    if (event.key === OUTBOX_KEY) renderOutboxStatus();
  });
}
