/* Requests to the API: the session's CSRF token and the one error shape. */

import { config } from "./workspace.js";

export const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function csrfToken() {
  // The cookie is read each time: logging in again in another tab rotates it.
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : config.csrfToken;
}

export function request(method, url, body, headers) {
  const allHeaders = { Accept: "application/json", "X-CSRFToken": csrfToken(), ...(headers || {}) };
  if (body !== undefined) allHeaders["Content-Type"] = "application/json";
  return fetch(url, {
    method,
    credentials: "same-origin",
    headers: allHeaders,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

export async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
    if (body && body.detail) return String(body.detail);
  } catch (_error) {
    /* not JSON: fall through */
  }
  return `the server answered ${response.status}`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
