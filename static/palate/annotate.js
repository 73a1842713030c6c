/* The annotator's workspace: show a pair, take a judgment, show the next pair at once.
 *
 * Judgments go into an outbox (memory and localStorage) before anything is sent, and are sent in the
 * background with their own Idempotency-Key, so a network failure or a reload loses nothing and never
 * stores a judgment twice. The next pair is fetched while the current one is read.
 *
 * Data-derived HTML comes only from the server's *_html fields (sanitised there); raw text is only ever
 * placed with textContent.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("workspace-config").textContent);
  const byId = (id) => document.getElementById(id);

  const CHOICE_BY_DIGIT = { 1: "left", 2: "right", 3: "tie", 4: "both_bad" };
  const CHOICE_BY_ARROW = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie" };
  const STRENGTH_WORDS = {
    1: ["better"],
    2: ["slightly", "much"],
    3: ["slightly", "clearly", "much"],
    4: ["slightly", "somewhat", "clearly", "much"],
    5: ["barely", "slightly", "clearly", "much", "far"],
  };
  const ROLE_NAMES = { user: "User", assistant: "Assistant", system: "System", tool: "Tool" };
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  const OUTBOX_KEY = `palate:outbox:${config.project}:${config.user}`;
  const GUIDELINES_KEY = `palate:guidelines-open:${config.project}`;

  const elements = {
    workspace: byId("workspace"),
    progress: byId("progress"),
    outboxStatus: byId("outbox-status"),
    alerts: byId("alerts"),
    prompt: byId("prompt"),
    left: byId("left"),
    right: byId("right"),
    diffToggle: byId("diff-toggle"),
    diffNotes: document.querySelectorAll(".ws-diff-note"),
    guidelines: byId("guidelines"),
    form: byId("decision"),
    editBanner: byId("edit-banner"),
    editWhen: byId("edit-when"),
    editCancel: byId("edit-cancel"),
    strengthGroup: byId("strength-group"),
    strengthLegend: byId("strength-legend"),
    strengthOptions: byId("strength-options"),
    strengthHelp: byId("strength-help"),
    rationale: byId("rationale"),
    missing: byId("missing"),
    submit: byId("submit"),
    submitLabel: byId("submit-label"),
    skip: byId("skip"),
    undo: byId("undo"),
    done: byId("done"),
    doneReason: byId("done-reason"),
    doneProgress: byId("done-progress"),
    checkAgain: byId("check-again"),
    loading: byId("loading"),
    announce: byId("announce"),
    skipDialog: byId("skip-dialog"),
    skipReason: byId("skip-reason"),
    shortcutSheet: byId("shortcut-sheet"),
    shortcutsButton: byId("shortcuts-button"),
  };

  /* ---------- Requests ---------- */

  class HttpError extends Error {
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

  function request(method, url, body, headers) {
    const allHeaders = { Accept: "application/json", "X-CSRFToken": csrfToken(), ...(headers || {}) };
    if (body !== undefined) allHeaders["Content-Type"] = "application/json";
    return fetch(url, {
      method,
      credentials: "same-origin",
      headers: allHeaders,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
      if (body && body.detail) return String(body.detail);
    } catch (_error) {
      /* not JSON: fall through */
    }
    return `the server answered ${response.status}`;
  }

  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /* ---------- Time on item: visible time only ---------- */

  class Stopwatch {
    constructor() {
      this.elapsed = 0;
      this.since = null;
    }
    start() {
      this.elapsed = 0;
      this.since = document.hidden ? null : performance.now();
    }
    pause() {
      if (this.since !== null) {
        this.elapsed += performance.now() - this.since;
        this.since = null;
      }
    }
    resume() {
      if (this.since === null && !document.hidden) this.since = performance.now();
    }
    read() {
      return Math.round(this.elapsed + (this.since === null ? 0 : performance.now() - this.since));
    }
  }

  const itemWatch = new Stopwatch();
  const editWatch = new Stopwatch();
  let activeWatch = itemWatch;

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) activeWatch.pause();
    else activeWatch.resume();
  });

  /* ---------- Outbox: judgments and skips waiting to be sent ---------- */

  let memoryOutbox = [];

  function outboxRead() {
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

  function outboxAdd(item) {
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

  function scheduleRetry() {
    clearTimeout(retryTimer);
    const delay = RETRY_DELAYS_MS[Math.min(retryAttempt, RETRY_DELAYS_MS.length - 1)];
    retryAttempt += 1;
    retryTimer = setTimeout(flush, delay * (0.8 + Math.random() * 0.4));
  }

  function flush() {
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
            renderProgress();
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
  function outboxSettled() {
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

  function renderOutboxStatus() {
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

  window.addEventListener("online", () => flush());
  window.addEventListener("storage", (event) => {
    if (event.key === OUTBOX_KEY) renderOutboxStatus();
  });

  /* ---------- Alerts and announcements ---------- */

  function showAlert(text) {
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
  function showNotice(text) {
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

  function announce(text) {
    elements.announce.textContent = text;
  }

  /* ---------- Word-level differences ---------- */

  const MAX_DIFF_CELLS = 4_000_000;

  function words(text) {
    return text.match(/\s+|\S+/g) || [];
  }

  /** For two token lists, which non-space tokens are not part of the longest common subsequence. */
  function differingTokens(first, second) {
    const indexA = [];
    const indexB = [];
    first.forEach((token, index) => /\S/.test(token) && indexA.push(index));
    second.forEach((token, index) => /\S/.test(token) && indexB.push(index));
    const a = indexA.map((index) => first[index]);
    const b = indexB.map((index) => second[index]);
    const markA = new Array(first.length).fill(false);
    const markB = new Array(second.length).fill(false);
    let start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
    let endA = a.length;
    let endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
      endA -= 1;
      endB -= 1;
    }
    const n = endA - start;
    const m = endB - start;
    if (n * m > MAX_DIFF_CELLS) {
      // Too long to align word by word: mark words the other side does not have as often.
      const counts = (list, from, to) => {
        const map = new Map();
        for (let i = from; i < to; i += 1) map.set(list[i], (map.get(list[i]) || 0) + 1);
        return map;
      };
      const inB = counts(b, start, endB);
      const inA = counts(a, start, endA);
      for (let i = start; i < endA; i += 1) {
        const left = inB.get(a[i]) || 0;
        if (left > 0) inB.set(a[i], left - 1);
        else markA[indexA[i]] = true;
      }
      for (let j = start; j < endB; j += 1) {
        const left = inA.get(b[j]) || 0;
        if (left > 0) inA.set(b[j], left - 1);
        else markB[indexB[j]] = true;
      }
      return [markA, markB];
    }
    const width = m + 1;
    const table = new Uint32Array((n + 1) * width);
    for (let i = n - 1; i >= 0; i -= 1) {
      for (let j = m - 1; j >= 0; j -= 1) {
        table[i * width + j] =
          a[start + i] === b[start + j]
            ? table[(i + 1) * width + j + 1] + 1
            : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (a[start + i] === b[start + j]) {
        i += 1;
        j += 1;
      } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
        markA[indexA[start + i]] = true;
        i += 1;
      } else {
        markB[indexB[start + j]] = true;
        j += 1;
      }
    }
    for (; i < n; i += 1) markA[indexA[start + i]] = true;
    for (; j < m; j += 1) markB[indexB[start + j]] = true;
    return [markA, markB];
  }

  /** Plain text with <mark> around differing runs, built node by node (never as HTML). */
  function renderMarkedText(container, tokens, marks) {
    const fragment = document.createDocumentFragment();
    let run = "";
    let runMarked = false;
    const closeRun = () => {
      if (!run) return;
      if (runMarked) {
        const mark = document.createElement("mark");
        mark.textContent = run;
        fragment.append(mark);
      } else {
        fragment.append(document.createTextNode(run));
      }
      run = "";
    };
    tokens.forEach((token, index) => {
      const isSpace = !/\S/.test(token);
      // Spaces between two marked words on one line stay inside the mark, so a changed phrase reads as one.
      let marked = marks[index];
      if (isSpace) {
        let next = index + 1;
        while (next < tokens.length && !/\S/.test(tokens[next])) next += 1;
        marked = runMarked && next < tokens.length && marks[next] && !token.includes("\n");
      }
      if (marked !== runMarked) {
        closeRun();
        runMarked = marked;
      }
      run += token;
    });
    closeRun();
    const body = document.createElement("div");
    body.className = "ws-plain";
    body.append(fragment);
    container.replaceChildren(body);
  }

  /* ---------- State ---------- */

  const state = {
    mode: "loading", // loading | pair | edit | done
    current: null, // the pair on screen (a /next/ payload)
    ahead: null, // a promise of the next pair (or the end), fetched while the current one is read
    doneReason: "",
    progressBase: null, // {progress, storedBefore} from the latest pair shown
    form: emptyForm(),
    awaitingStrength: false,
    diff: false,
    edit: null, // {index, judgment, saved: {form, awaitingStrength}}
  };

  function emptyForm() {
    return { choice: null, strength: null, criteria: {}, rationale: "" };
  }

  /* ---------- Rendering ---------- */

  function setMode(mode) {
    state.mode = mode;
    elements.workspace.dataset.state = mode;
    const showingPair = mode === "pair" || mode === "edit";
    elements.loading.hidden = mode !== "loading";
    elements.done.hidden = mode !== "done";
    byId("reading").hidden = !showingPair;
    elements.form.hidden = !showingPair;
    elements.editBanner.hidden = mode !== "edit";
    elements.skip.disabled = mode !== "pair";
    elements.submitLabel.textContent = mode === "edit" ? "Save change" : "Submit";
    elements.diffToggle.hidden = !showingPair;
  }

  function renderPrompt(prompt) {
    const container = elements.prompt;
    container.replaceChildren();
    if (Array.isArray(prompt.messages) && prompt.messages.length) {
      const list = document.createElement("ol");
      list.className = "ws-conversation";
      for (const message of prompt.messages) {
        const turn = document.createElement("li");
        const role = String(message.role || "");
        turn.className = `ws-turn ws-turn-${role === "user" || role === "assistant" || role === "system" ? role : "other"}`;
        const label = document.createElement("div");
        label.className = "ws-role";
        label.textContent = ROLE_NAMES[role] || role;
        const body = document.createElement("div");
        body.className = "prose";
        body.innerHTML = message.content_html; // sanitised by the server (annotate/rendering.py)
        turn.append(label, body);
        list.append(turn);
      }
      container.append(list);
      // The turn being answered is the last one: show it first.
      requestAnimationFrame(() => {
        container.scrollTop = container.scrollHeight;
      });
    } else {
      const body = document.createElement("div");
      body.className = "prose";
      body.innerHTML = prompt.content_html; // sanitised by the server (annotate/rendering.py)
      container.append(body);
      container.scrollTop = 0;
    }
  }

  function renderResponses(item) {
    if (state.diff) {
      const leftTokens = words(item.left.content);
      const rightTokens = words(item.right.content);
      const [leftMarks, rightMarks] = differingTokens(leftTokens, rightTokens);
      renderMarkedText(elements.left, leftTokens, leftMarks);
      renderMarkedText(elements.right, rightTokens, rightMarks);
    } else {
      elements.left.innerHTML = item.left.content_html; // sanitised by the server
      elements.right.innerHTML = item.right.content_html; // sanitised by the server
    }
    elements.diffNotes.forEach((note) => {
      note.hidden = !state.diff;
    });
  }

  function renderItem(item) {
    renderPrompt(item.prompt);
    renderResponses(item);
    elements.left.scrollTop = 0;
    elements.right.scrollTop = 0;
  }

  /** The server's progress from the latest pair, plus judgments this page saw stored since it asked. */
  function shownProgress() {
    const base = state.progressBase;
    if (!base) return null;
    return { ...base.progress, done_today: base.progress.done_today + (judgmentsStored - base.storedBefore) };
  }

  function progressText(progress) {
    if (!progress) return "";
    const parts = [`${progress.done_today} done today`];
    // Pairs left in the whole project: beside "nothing left for you" it would only confuse.
    if (progress.remaining && state.mode !== "done") parts.push(`${progress.remaining} left`);
    return parts.join(" · ");
  }

  function renderProgress() {
    const progress = shownProgress();
    elements.progress.textContent = progressText(progress);
    elements.doneProgress.textContent = progress
      ? `You judged ${progress.done_today} pair${progress.done_today === 1 ? "" : "s"} today.`
      : "";
  }

  function strengthWords() {
    return STRENGTH_WORDS[config.strengthScale] || Array.from({ length: config.strengthScale }, (_value, index) => `${index + 1}`);
  }

  function buildStrengthOptions() {
    if (!elements.strengthOptions) return;
    strengthWords().forEach((word, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ws-option";
      button.dataset.strength = String(index + 1);
      button.setAttribute("aria-pressed", "false");
      const digit = document.createElement("kbd");
      digit.setAttribute("aria-hidden", "true");
      digit.textContent = String(index + 1);
      const label = document.createElement("span");
      label.textContent = word.charAt(0).toUpperCase() + word.slice(1);
      button.append(digit, label);
      elements.strengthOptions.append(button);
    });
  }

  function strengthApplies() {
    return Boolean(config.strengthScale) && (state.form.choice === "left" || state.form.choice === "right");
  }

  /** What still has to be answered before the form can be sent, each with the control to go to. */
  function missingAnswers() {
    const missing = [];
    const form = state.form;
    if (!form.choice) missing.push({ label: "which is better", focus: "#choice-group .ws-option" });
    if (strengthApplies() && !form.strength) missing.push({ label: "how much better", focus: "#strength-group .ws-option" });
    for (const criterion of config.criteria) {
      if (!form.criteria[criterion]) {
        missing.push({ label: criterion, focus: `.ws-criterion[data-criterion="${CSS.escape(criterion)}"] .ws-option` });
      }
    }
    if (config.rationale === "required" && !form.rationale.trim()) missing.push({ label: "why", focus: "#rationale" });
    return missing;
  }

  function renderForm() {
    const form = state.form;
    elements.form.querySelectorAll(".ws-choice").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.choice === form.choice));
    });
    if (elements.strengthGroup) {
      const applies = strengthApplies();
      elements.strengthGroup.disabled = !applies;
      elements.strengthGroup.classList.toggle("awaiting", applies && state.awaitingStrength && !form.strength);
      elements.strengthLegend.textContent = applies ? `How much better is the ${form.choice} response?` : "How much better?";
      const prompting = applies && state.awaitingStrength && !form.strength;
      elements.strengthHelp.hidden = !prompting;
      elements.strengthHelp.textContent = prompting ? `Press 1–${config.strengthScale} now (or Shift+digit at any time).` : "";
      elements.strengthOptions.querySelectorAll(".ws-option").forEach((button) => {
        button.setAttribute("aria-pressed", String(applies && Number(button.dataset.strength) === form.strength));
      });
    }
    elements.form.querySelectorAll(".ws-criterion .ws-option").forEach((button) => {
      button.setAttribute("aria-pressed", String(form.criteria[button.dataset.criterion] === button.dataset.value));
    });
    if (elements.rationale && elements.rationale.value !== form.rationale) elements.rationale.value = form.rationale;
    const missing = missingAnswers();
    elements.submit.setAttribute("aria-disabled", String(missing.length > 0));
    elements.missing.textContent = missing.length ? `Still to answer: ${missing.map((item) => item.label).join(", ")}.` : "";
    elements.missing.classList.remove("insist");
  }

  /* ---------- Showing pairs ---------- */

  async function fetchPair(after) {
    const url = after ? `${config.urls.next}?after=${encodeURIComponent(after)}` : config.urls.next;
    const storedBefore = judgmentsStored;
    const response = await request("GET", url);
    if (response.status === 204) {
      return { done: true, reason: response.headers.get("Palate-Reason") || "Nothing is left for you to judge." };
    }
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    const item = await response.json();
    item.storedBefore = storedBefore;
    // The lease's end on this machine's clock, measured against the server's Date header.
    const serverNow = Date.parse(response.headers.get("Date") || "");
    const expiresAt = Date.parse(item.expires_at);
    item.leaseEndsLocally = Number.isNaN(serverNow) ? expiresAt : Date.now() + (expiresAt - serverNow);
    return item;
  }

  /** Fetches a pair, retrying network failures and server errors with backoff. */
  async function fetchPairPatiently(after) {
    for (let attempt = 0; ; attempt += 1) {
      // Everything this page did must reach the server first, or it would hand the same lease back.
      await outboxSettled();
      try {
        return await fetchPair(after);
      } catch (error) {
        if (error instanceof HttpError && error.status < 500 && error.status !== 429) {
          return { error: true, reason: `The next pair could not be loaded: ${error.message}.` };
        }
        if (attempt === 1) elements.loading.textContent = "Cannot reach the server. Trying again…";
        await sleep(RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]);
      }
    }
  }

  function show(result) {
    elements.loading.textContent = "Loading the next pair…";
    if (result.done || result.error) {
      state.current = null;
      state.ahead = null;
      state.doneReason = result.reason;
      elements.doneReason.textContent = result.reason;
      byId("done-title").textContent = result.error ? "Something went wrong" : "Nothing to judge right now";
      setMode("done");
      renderProgress();
      announce(result.reason);
      elements.done.focus();
      return;
    }
    const fromDone = elements.done.contains(document.activeElement);
    state.current = result;
    state.progressBase = { progress: result.progress, storedBefore: result.storedBefore };
    state.form = emptyForm();
    state.awaitingStrength = false;
    setMode("pair");
    renderItem(result);
    renderForm();
    renderProgress();
    itemWatch.start();
    activeWatch = itemWatch;
    announce(`New pair. ${progressText(shownProgress())}.`);
    if (fromDone) elements.form.querySelector(".ws-option")?.focus();
    state.ahead = lookAhead(result.assignment);
  }

  const LEASE_MARGIN_MS = 60_000;

  async function advance() {
    const ahead = state.ahead;
    const previous = state.current;
    state.current = null;
    state.ahead = null;
    let ready = ahead && ahead.result;
    if (ready && ready.leaseEndsLocally && ready.leaseEndsLocally - Date.now() < LEASE_MARGIN_MS) {
      // Fetched long ago (the annotator took a break): its lease is about to run out, so ask afresh.
      ready = null;
      ahead.promise = fetchPairPatiently(previous ? previous.assignment : null);
    }
    // A pair fetched ahead appears in the same frame; only a slow one shows the loading line.
    if (!ready) setMode("loading");
    show(ready || (await (ahead ? ahead.promise : fetchPairPatiently(null))));
    const top = elements.workspace.getBoundingClientRect().top;
    if (top < 0) elements.workspace.scrollIntoView({ block: "start" });
  }

  function lookAhead(after) {
    const ahead = { result: null, promise: null };
    ahead.promise = fetchPairPatiently(after).then((result) => {
      ahead.result = result;
      return result;
    });
    return ahead;
  }

  async function start() {
    setMode("loading");
    renderOutboxStatus();
    // Judgments left from an earlier visit are sent before anything else.
    show(await fetchPairPatiently(null));
  }

  /* ---------- Choosing ---------- */

  /** After a shortcut, focus that sat on an option follows the choice, so Enter submits what is shown. */
  function focusFollows(selector) {
    const focused = document.activeElement;
    if (!focused || !focused.classList || !focused.classList.contains("ws-option")) return;
    const pressed = elements.form.querySelector(selector);
    if (pressed) pressed.focus();
  }

  function choose(choice, { byKey = false } = {}) {
    if (!config.allowedChoices.includes(choice)) return;
    if (state.form.choice !== choice) state.form.strength = null;
    state.form.choice = choice;
    state.awaitingStrength = byKey && strengthApplies();
    renderForm();
    if (byKey) focusFollows('.ws-choice[aria-pressed="true"]');
  }

  function setStrength(value, { byKey = false } = {}) {
    if (!strengthApplies() || value < 1 || value > config.strengthScale) return false;
    state.form.strength = value;
    state.awaitingStrength = false;
    renderForm();
    if (byKey) focusFollows('#strength-options .ws-option[aria-pressed="true"]');
    return true;
  }

  function setCriterion(name, value) {
    state.form.criteria[name] = value;
    renderForm();
  }

  function judgmentBody() {
    const form = state.form;
    const body = { choice: form.choice };
    if (strengthApplies()) body.strength = form.strength;
    if (config.criteria.length) body.criteria = { ...form.criteria };
    if (config.rationale !== "off" && form.rationale.trim()) body.rationale = form.rationale;
    return body;
  }

  function insistOnMissing() {
    const missing = missingAnswers();
    if (!missing.length) return false;
    elements.missing.classList.add("insist");
    // Re-set the text so screen readers announce it again.
    elements.missing.textContent = "";
    elements.missing.textContent = `Still to answer: ${missing.map((item) => item.label).join(", ")}.`;
    const target = elements.form.querySelector(missing[0].focus);
    if (target && !target.disabled) target.focus();
    return true;
  }

  function submit() {
    if (state.mode === "edit") return saveEdit();
    if (state.mode !== "pair" || !state.current) return;
    if (insistOnMissing()) return;
    const item = state.current;
    outboxAdd({
      key: newIdempotencyKey(),
      kind: "judgment",
      url: config.urls.submit,
      pair: item.pair,
      body: { assignment: item.assignment, ...judgmentBody(), duration_ms: itemWatch.read() },
      createdAt: new Date().toISOString(),
    });
    flush();
    advance();
  }

  function openSkipDialog() {
    if (state.mode !== "pair") return;
    elements.skipReason.value = "";
    elements.skipDialog.returnValue = "";
    elements.skipDialog.showModal();
    elements.skipReason.focus();
  }

  function skip(reason) {
    if (state.mode !== "pair" || !state.current) return;
    const item = state.current;
    outboxAdd({
      key: newIdempotencyKey(),
      kind: "skip",
      url: config.urls.skip.replace("{id}", String(item.assignment)),
      pair: item.pair,
      body: reason ? { reason } : {},
      createdAt: new Date().toISOString(),
    });
    flush();
    showNotice("Skipped. That pair will not come back to you.");
    advance();
  }

  /* ---------- Undo: change a recent judgment ---------- */

  function minutesAgo(isoTime) {
    const minutes = Math.floor((Date.now() - new Date(isoTime).getTime()) / 60000);
    if (minutes < 1) return "from just now";
    return minutes === 1 ? "from 1 minute ago" : `from ${minutes} minutes ago`;
  }

  let undoing = false;
  let savingEdit = false;

  async function undo() {
    if (state.mode === "loading" || undoing || savingEdit) return;
    undoing = true;
    elements.undo.disabled = true;
    try {
      await Promise.race([outboxSettled(), sleep(5000)]);
      if (outboxRead().some((item) => item.kind === "judgment")) {
        showAlert("Your last judgment has not reached the server yet, so it cannot be changed yet. Try again once it is sent.");
        return;
      }
      let response;
      try {
        response = await request("GET", config.urls.recent);
      } catch (_networkError) {
        showAlert("Cannot reach the server to load your last judgment. Try again in a moment.");
        return;
      }
      if (!response.ok) {
        showAlert(`Your recent judgments could not be loaded: ${await errorMessage(response)}.`);
        return;
      }
      const recent = await response.json();
      const index = state.mode === "edit" ? state.edit.index + 1 : 0;
      if (!recent.length) {
        showNotice(`Nothing to undo: judgments can be changed for ${config.editWindowMinutes} minutes after they are made.`);
        return;
      }
      if (index >= recent.length) {
        showNotice("No earlier judgment can still be changed.");
        return;
      }
      enterEdit(recent[index], index);
    } finally {
      undoing = false;
      elements.undo.disabled = false;
    }
  }

  function enterEdit(judgment, index) {
    if (state.mode !== "edit") {
      itemWatch.pause();
      state.edit = { saved: { mode: state.mode, form: state.form, awaitingStrength: state.awaitingStrength } };
      if (elements.rationale) state.edit.saved.form.rationale = elements.rationale.value;
    }
    state.edit.index = index;
    state.edit.judgment = judgment;
    state.form = {
      choice: judgment.choice,
      strength: judgment.strength,
      criteria: { ...(judgment.criteria || {}) },
      rationale: judgment.rationale || "",
    };
    state.awaitingStrength = false;
    setMode("edit");
    renderItem(judgment);
    renderForm();
    elements.editWhen.textContent = minutesAgo(judgment.created_at);
    editWatch.start();
    activeWatch = editWatch;
    // Focus on the banner (not on an option) says where we are, and leaves Enter to save the change.
    elements.editBanner.focus();
  }

  function leaveEdit() {
    if (state.mode !== "edit" || savingEdit) return;
    const saved = state.edit.saved;
    state.edit = null;
    editWatch.pause();
    activeWatch = itemWatch;
    state.form = saved.form;
    state.awaitingStrength = saved.awaitingStrength;
    if (saved.mode === "pair" && state.current) {
      setMode("pair");
      renderItem(state.current);
      renderForm();
      itemWatch.resume();
    } else {
      elements.doneReason.textContent = state.doneReason;
      setMode("done");
    }
    renderProgress();
  }

  async function saveEdit() {
    if (savingEdit || insistOnMissing()) return;
    const judgment = state.edit.judgment;
    const body = { ...judgmentBody(), duration_ms: editWatch.read() };
    // One change at a time: a second Enter must not store a second revision.
    savingEdit = true;
    elements.submit.disabled = true;
    let response;
    try {
      response = await request("PATCH", config.urls.edit.replace("{id}", String(judgment.id)), body);
    } catch (_networkError) {
      showAlert("Cannot reach the server: your change was not saved. Your answers are still here; try again.");
      return;
    } finally {
      savingEdit = false;
      elements.submit.disabled = false;
    }
    if (!response.ok) {
      showAlert(`Your change was not saved: ${await errorMessage(response)}.`);
      return;
    }
    leaveEdit();
    showNotice("Change saved. Your earlier answer is kept in the history.");
  }

  /* ---------- Differences and guidelines ---------- */

  function toggleDiff() {
    state.diff = !state.diff;
    elements.diffToggle.setAttribute("aria-pressed", String(state.diff));
    const item = state.mode === "edit" ? state.edit.judgment : state.current;
    if (item) renderResponses(item);
  }

  function toggleGuidelines() {
    if (elements.guidelines) elements.guidelines.open = !elements.guidelines.open;
  }

  if (elements.guidelines) {
    try {
      // As the annotator left it last time in this project (closed at first: the overview shows them too).
      const stored = window.localStorage.getItem(GUIDELINES_KEY);
      elements.guidelines.open = stored === "1";
    } catch (_error) {
      /* closed, as it starts */
    }
    elements.guidelines.addEventListener("toggle", () => {
      try {
        window.localStorage.setItem(GUIDELINES_KEY, elements.guidelines.open ? "1" : "0");
      } catch (_error) {
        /* not remembered: fine */
      }
    });
  }

  /* ---------- Mouse and keyboard ---------- */

  elements.form.addEventListener("click", (event) => {
    const button = event.target.closest("button.ws-option");
    if (!button) return;
    if (button.dataset.choice) choose(button.dataset.choice);
    else if (button.dataset.strength) setStrength(Number(button.dataset.strength));
    else if (button.dataset.criterion) setCriterion(button.dataset.criterion, button.dataset.value);
  });
  elements.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  if (elements.rationale) {
    elements.rationale.addEventListener("input", () => {
      state.form.rationale = elements.rationale.value;
      renderForm();
    });
  }
  elements.skip.addEventListener("click", openSkipDialog);
  elements.undo.addEventListener("click", undo);
  elements.editCancel.addEventListener("click", leaveEdit);
  elements.diffToggle.addEventListener("click", toggleDiff);
  elements.checkAgain.addEventListener("click", () => start());
  elements.shortcutsButton.addEventListener("click", () => elements.shortcutSheet.showModal());
  elements.skipDialog.addEventListener("close", () => {
    if (elements.skipDialog.returnValue === "skip") skip(elements.skipReason.value.trim());
  });

  function isTyping(target) {
    return Boolean(target.closest && target.closest("textarea, input, select, [contenteditable=''], [contenteditable='true']"));
  }

  function digitOf(event) {
    const match = /^(?:Digit|Numpad)([1-9])$/.exec(event.code || "");
    if (match) return Number(match[1]);
    return /^[1-9]$/.test(event.key) ? Number(event.key) : null;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (document.querySelector("dialog[open]")) return; // dialogs keep their own keys (Esc closes them)
    const target = event.target;
    const working = state.mode === "pair" || state.mode === "edit";

    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (working && (!isTyping(target) || target === elements.rationale)) {
        event.preventDefault();
        submit();
      }
      return;
    }
    if (isTyping(target) || event.ctrlKey || event.metaKey || event.altKey) return;

    if (event.key === "?") {
      event.preventDefault();
      elements.shortcutSheet.showModal();
      return;
    }
    if (event.key === "Escape" && state.mode === "edit") {
      event.preventDefault();
      leaveEdit();
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "u" && !event.shiftKey && state.mode !== "loading") {
      event.preventDefault();
      undo();
      return;
    }
    if (key === "g" && !event.shiftKey && elements.guidelines) {
      event.preventDefault();
      toggleGuidelines();
      return;
    }
    if (!working) return;
    if (key === "d" && !event.shiftKey) {
      event.preventDefault();
      toggleDiff();
      return;
    }
    if (key === "s" && !event.shiftKey && state.mode === "pair") {
      event.preventDefault();
      openSkipDialog();
      return;
    }
    if (event.key === "Enter") {
      // Enter on another button or a link does what it always does; on an option not yet chosen it
      // chooses it; everywhere else it submits.
      const control = target.closest && target.closest("a, button, summary");
      if (control && !(control.classList.contains("ws-option") && control.getAttribute("aria-pressed") === "true")) return;
      event.preventDefault();
      submit();
      return;
    }
    const digit = digitOf(event);
    if (digit !== null) {
      if (event.shiftKey) {
        if (config.strengthScale) {
          event.preventDefault();
          setStrength(digit, { byKey: true });
        }
        return;
      }
      if (state.awaitingStrength && setStrength(digit, { byKey: true })) {
        event.preventDefault();
        return;
      }
      if (CHOICE_BY_DIGIT[digit]) {
        event.preventDefault();
        choose(CHOICE_BY_DIGIT[digit], { byKey: true });
      }
      return;
    }
    if (CHOICE_BY_ARROW[event.key] && !event.shiftKey) {
      // Inside a scrolling panel the arrow keys scroll it.
      if (target.closest && target.closest(".ws-scroll")) return;
      event.preventDefault();
      choose(CHOICE_BY_ARROW[event.key], { byKey: true });
    }
  });

  buildStrengthOptions();
  start();
})();
