/* Undo: bring back a recent judgment, change it, and save the change as a new revision. */

import { showAlert, showNotice } from "./alerts.js";
import { judgmentBody, insistOnMissing, releaseFocus } from "./form.js";
import { outboxRead, outboxSettled } from "./outbox.js";
import { renderForm, renderItem, renderProgress, setMode } from "./render.js";
import { errorMessage, request, sleep } from "./requests.js";
import { editWatch, itemWatch, timeWith } from "./stopwatch.js";
import { config, elements, state } from "./workspace.js";

function minutesAgo(isoTime) {
  const minutes = Math.floor((Date.now() - new Date(isoTime).getTime()) / 60000);
  if (minutes < 1) return "from just now";
  return minutes === 1 ? "from 1 minute ago" : `from ${minutes} minutes ago`;
}

let undoing = false;
let savingEdit = false;

export async function undo() {
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
  timeWith(editWatch);
  // Focus on the banner (not on an option) says where we are, and leaves Enter to save the change.
  elements.editBanner.focus();
}

export function leaveEdit() {
  if (state.mode !== "edit" || savingEdit) return;
  const saved = state.edit.saved;
  state.edit = null;
  editWatch.pause();
  timeWith(itemWatch);
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

export async function saveEdit() {
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
  releaseFocus();
  leaveEdit();
  showNotice("Change saved. Your earlier answer is kept in the history.");
}
