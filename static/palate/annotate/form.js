/* The decision form: choosing, how much better, criteria, and the body a judgment is sent with. */

import { missingAnswers, renderForm, strengthApplies } from "./render.js";
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

export function setCriterion(name, value) {
  state.form.criteria[name] = value;
  renderForm();
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
