/* The decision form: choosing, how much better, criteria, and the body a judgment is sent with. */

import { criterionSelector, missingAnswers, renderForm, strengthApplies } from "./render.js";
import { config, elements, state } from "./workspace.js";

/** After a shortcut, focus that sat on an option follows the choice, so Enter submits what is shown. */
function focusFollows(selector) {
  const focused = document.activeElement;
  if (!focused || !focused.classList || !focused.classList.contains("ws-option")) return;
  const pressed = elements.form.querySelector(selector);
  if (pressed) pressed.focus();
}

export function choose(choice, { byKey = false } = {}) {
  if (!config.allowedChoices.includes(choice)) return;
  if (state.form.choice !== choice) state.form.strength = null;
  state.form.choice = choice;
  state.awaitingStrength = byKey && strengthApplies();
  renderForm();
  if (byKey) focusFollows('.ws-choice[aria-pressed="true"]');
}

export function setStrength(value, { byKey = false } = {}) {
  if (!strengthApplies() || value < 1 || value > config.strengthScale) return false;
  state.form.strength = value;
  state.awaitingStrength = false;
  renderForm();
  if (byKey) focusFollows('#strength-options .ws-option[aria-pressed="true"]');
  return true;
}

export function setCriterion(name, value, { byKey = false } = {}) {
  if (!config.criteria.includes(name) || !config.allowedChoices.includes(value)) return;
  state.form.criteria[name] = value;
  renderForm();
  if (byKey && !focusNextCriterion()) elements.submit.focus();
}

/** Focus on the next criterion not yet answered (after the one in focus); false when all are answered. */
export function focusNextCriterion() {
  const unanswered = config.criteria.filter((criterion) => !state.form.criteria[criterion]);
  if (!unanswered.length) return false;
  const current = document.activeElement?.closest?.(".ws-criterion")?.dataset.criterion;
  const after = config.criteria.indexOf(current);
  const next = unanswered.find((criterion) => config.criteria.indexOf(criterion) > after) || unanswered[0];
  elements.form.querySelector(criterionSelector(next))?.focus();
  return true;
}

/** After a submit the keys are shortcuts again: nothing typed next may land in the rationale or on an option. */
export function releaseFocus() {
  const focused = document.activeElement;
  if (focused && focused !== document.body && elements.form.contains(focused)) focused.blur();
}

export function judgmentBody() {
  const form = state.form;
  const body = { choice: form.choice };
  if (strengthApplies()) body.strength = form.strength;
  if (config.criteria.length) body.criteria = { ...form.criteria };
  if (config.rationale !== "off" && form.rationale.trim()) body.rationale = form.rationale;
  return body;
}

/** Says what is still to answer and goes there; false when nothing is missing. */
export function insistOnMissing() {
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
