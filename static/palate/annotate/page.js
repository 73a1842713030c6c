/* The annotator's workspace: show a pair, take a judgment, show the next pair at once. The next pair is
 * fetched while the current one is read; judgments go through the outbox (outbox.js). */

import { announce, showNotice } from "./alerts.js";
import { leaveEdit, saveEdit, undo } from "./edit.js";
import {
  choose,
  focusNextCriterion,
  insistOnMissing,
  judgmentBody,
  releaseFocus,
  setCriterion,
  setStrength,
} from "./form.js";
import { installShortcuts } from "./keyboard.js";
import { flush, judgmentsStoredCount, onSent, outboxAdd, outboxSettled, outboxWatch, renderOutboxStatus } from "./outbox.js";
import {
  buildStrengthOptions,
  progressText,
  renderForm,
  renderItem,
  renderProgress,
  renderResponses,
  setMode,
  shownProgress,
} from "./render.js";
import { HttpError, RETRY_DELAYS_MS, errorMessage, request, sleep } from "./requests.js";
import { itemWatch, pauseWhileHidden, timeWith } from "./stopwatch.js";
import { byId, config, elements, emptyForm, state } from "./workspace.js";

const GUIDELINES_KEY = `palate:guidelines-open:${config.project}`;

/* ---------- Showing pairs ---------- */

async function fetchPair(after) {
  const url = after ? `${config.urls.next}?after=${encodeURIComponent(after)}` : config.urls.next;
  const storedBefore = judgmentsStoredCount();
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
  timeWith(itemWatch);
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

/** What is left for this annotator is counted once when the page opens (never on next or submit); the
 * page then takes off its own judgments and skips. */
async function fetchMyProgress() {
  try {
    const response = await request("GET", config.urls.progress);
    if (!response.ok) return;
    const mine = await response.json();
    state.mine = { ...mine, skipsBefore: state.skips };
    renderProgress();
  } catch (_error) {
    /* the progress line goes without it */
  }
}

async function start() {
  setMode("loading");
  renderOutboxStatus();
  fetchMyProgress();
  // Judgments left from an earlier visit are sent before anything else.
  show(await fetchPairPatiently(null));
}

/* ---------- Judging and skipping ---------- */

function submit() {
  if (state.mode === "edit") return saveEdit();
  if (state.mode !== "pair" || !state.current) return;
  if (insistOnMissing()) return;
  const item = state.current;
  outboxAdd({
    kind: "judgment",
    url: config.urls.submit,
    pair: item.pair,
    body: { assignment: item.assignment, ...judgmentBody(), duration_ms: itemWatch.read() },
  });
  releaseFocus();
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
    kind: "skip",
    url: config.urls.skip.replace("{id}", String(item.assignment)),
    pair: item.pair,
    body: reason ? { reason } : {},
  });
  state.skips += 1;
  flush();
  showNotice("Skipped. That pair will not come back to you.");
  advance();
}

/* ---------- Reporting a problem ---------- */

function flagCategory() {
  const checked = elements.flagForm.querySelector("input[name=flag-category]:checked");
  return checked ? checked.value : "";
}

function renderFlagNeeds() {
  const other = flagCategory() === "other";
  elements.flagTextNeed.textContent = other ? "(required for “Something else”)" : "(optional)";
  elements.flagText.required = other;
}

function openFlagDialog() {
  if (state.mode !== "pair") return;
  elements.flagForm.reset();
  elements.flagMissing.textContent = "";
  elements.flagDialog.returnValue = "";
  renderFlagNeeds();
  elements.flagDialog.showModal();
  elements.flagForm.querySelector("input[name=flag-category]").focus();
}

/** The report's problem, or "" when it can go: a category, and words for "other". */
function flagProblem() {
  const category = flagCategory();
  if (!category) return "Choose what is wrong.";
  if (category === "other" && !elements.flagText.value.trim()) return "Say what is wrong.";
  return "";
}

function onFlagSubmit(event) {
  if (!event.submitter || event.submitter.value !== "flag") return;
  const problem = flagProblem();
  if (!problem) return;
  event.preventDefault();
  elements.flagMissing.textContent = problem;
  (flagCategory() ? elements.flagText : elements.flagForm.querySelector("input[name=flag-category]")).focus();
}

function flag() {
  if (state.mode !== "pair" || !state.current) return;
  const item = state.current;
  // Its own request through the outbox, like a skip: the pair goes and the next one shows at once.
  outboxAdd({
    kind: "flag",
    url: config.urls.flag.replace("{id}", String(item.assignment)),
    pair: item.pair,
    body: { category: flagCategory(), text: elements.flagText.value.trim() },
  });
  state.skips += 1; // flagging skips the pair: one fewer left for them
  flush();
  showNotice("Reported. Your lead will look at that pair; it will not come back to you.");
  advance();
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

function rememberGuidelines() {
  if (!elements.guidelines) return;
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

/* ---------- Wiring ---------- */

pauseWhileHidden();
onSent(renderProgress);
outboxWatch();
rememberGuidelines();

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
elements.flag.addEventListener("click", openFlagDialog);
elements.flagForm.addEventListener("change", renderFlagNeeds);
elements.flagForm.addEventListener("input", () => {
  elements.flagMissing.textContent = "";
});
elements.flagForm.addEventListener("submit", onFlagSubmit);
elements.flagDialog.addEventListener("close", () => {
  if (elements.flagDialog.returnValue === "flag") flag();
});
installShortcuts({
  submit,
  leaveEdit,
  undo,
  toggleGuidelines,
  toggleDiff,
  openSkipDialog,
  openFlagDialog,
  choose,
  setStrength,
  setCriterion,
  focusNextCriterion,
});

buildStrengthOptions();
start();
