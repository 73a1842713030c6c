/* Rendering: the pair, the form and the progress line, from the state. Data-derived HTML comes only from
 * the server's *_html fields (sanitised there); raw text is only ever placed with textContent. */

import { renderDifference } from "./diff.js";
import { judgmentsStoredCount } from "./outbox.js";
import { byId, config, elements, state } from "./workspace.js";

const STRENGTH_WORDS = {
  1: ["better"],
  2: ["slightly", "much"],
  3: ["slightly", "clearly", "much"],
  4: ["slightly", "somewhat", "clearly", "much"],
  5: ["barely", "slightly", "clearly", "much", "far"],
};
const ROLE_NAMES = { user: "User", assistant: "Assistant", system: "System", tool: "Tool" };

export function setMode(mode) {
  state.mode = mode;
  elements.workspace.dataset.state = mode;
  const showingPair = mode === "pair" || mode === "edit";
  elements.loading.hidden = mode !== "loading";
  elements.done.hidden = mode !== "done";
  byId("reading").hidden = !showingPair;
  elements.form.hidden = !showingPair;
  elements.editBanner.hidden = mode !== "edit";
  elements.skip.disabled = mode !== "pair";
  elements.flag.disabled = mode !== "pair";
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

/** A response with no visible text says so: an empty output is something to judge, not a page fault. */
function markEmpty(element, content) {
  const empty = content.trim() === "";
  element.classList.toggle("is-empty", empty);
  if (!empty) return;
  const placeholder = document.createElement("p");
  placeholder.className = "empty-response";
  placeholder.textContent = content === "" ? "(empty response)" : "(empty response: white space only)";
  element.replaceChildren(placeholder);
}

export function renderResponses(item) {
  let throughout = false;
  if (state.diff) {
    ({ throughout } = renderDifference(elements.left, elements.right, item.left.content_html, item.right.content_html));
  } else {
    elements.left.innerHTML = item.left.content_html; // sanitised by the server
    elements.right.innerHTML = item.right.content_html; // sanitised by the server
  }
  markEmpty(elements.left, item.left.content);
  markEmpty(elements.right, item.right.content);
  elements.diffNotes.forEach((note) => {
    note.hidden = !state.diff;
    note.textContent = throughout ? "these responses differ throughout" : "differences marked";
  });
}

export function renderItem(item) {
  renderPrompt(item.prompt);
  renderResponses(item);
  elements.left.scrollTop = 0;
  elements.right.scrollTop = 0;
}

/** The server's progress from the latest pair, plus judgments this page saw stored since it asked; what is
 * left for the annotator is the count taken when the page opened, less their judgments and skips since. */
export function shownProgress() {
  const base = state.progressBase;
  if (!base) return null;
  const since = judgmentsStoredCount() - base.storedBefore;
  const progress = {
    ...base.progress,
    done_today: base.progress.done_today + since,
    done_total: base.progress.done_total + since,
  };
  const mine = state.mine;
  if (mine) {
    const judgedSince = progress.done_total - mine.done_total;
    progress.remaining_for_you = Math.max(0, mine.remaining_for_you - judgedSince - (state.skips - mine.skipsBefore));
  }
  return progress;
}

export function progressText(progress) {
  if (!progress) return "";
  const parts = [`${progress.done_today} done today`, `${progress.done_total} in total`];
  // Beside "nothing left for you" a number left would only confuse.
  if (progress.remaining_for_you !== undefined && state.mode !== "done") {
    parts.push(`${progress.remaining_for_you} left for you`);
  }
  return parts.join(" · ");
}

export function renderProgress() {
  const progress = shownProgress();
  elements.progress.textContent = progressText(progress);
  elements.doneProgress.textContent = progress
    ? `You judged ${progress.done_today} pair${progress.done_today === 1 ? "" : "s"} today.`
    : "";
}

function strengthWords() {
  return STRENGTH_WORDS[config.strengthScale] || Array.from({ length: config.strengthScale }, (_value, index) => `${index + 1}`);
}

export function buildStrengthOptions() {
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

export function strengthApplies() {
  return Boolean(config.strengthScale) && (state.form.choice === "left" || state.form.choice === "right");
}

export function criterionSelector(criterion) {
  return `.ws-criterion[data-criterion="${CSS.escape(criterion)}"]`;
}

const OPPOSITE_SIDE = { left: "right", right: "left" };

/** Criteria that favour the other side than the overall choice: worth a second look, never a refusal. */
export function contradictingCriteria() {
  const opposite = OPPOSITE_SIDE[state.form.choice];
  if (!opposite) return [];
  return config.criteria.filter((criterion) => state.form.criteria[criterion] === opposite);
}

function renderContradictions() {
  if (!elements.criteriaWarning) return;
  const contradicting = contradictingCriteria();
  const names = contradicting.map((criterion) => criterion.charAt(0).toUpperCase() + criterion.slice(1)).join(", ");
  const verb = contradicting.length === 1 ? "favours" : "favour";
  elements.criteriaWarning.textContent = contradicting.length
    ? `${names} ${verb} the ${OPPOSITE_SIDE[state.form.choice]} response, but overall you chose the ${state.form.choice} one. Check before you submit.`
    : "";
}

/** What still has to be answered before the form can be sent, each with the control to go to. */
export function missingAnswers() {
  const missing = [];
  const form = state.form;
  if (!form.choice) missing.push({ label: "which is better", focus: "#choice-group .ws-option" });
  if (strengthApplies() && !form.strength) missing.push({ label: "how much better", focus: "#strength-group .ws-option" });
  for (const criterion of config.criteria) {
    if (!form.criteria[criterion]) {
      // The group, not its first option: Enter there must not answer "left" unasked.
      missing.push({ label: criterion, focus: criterionSelector(criterion) });
    }
  }
  if (config.rationale === "required" && !form.rationale.trim()) missing.push({ label: "why", focus: "#rationale" });
  return missing;
}

export function renderForm() {
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
  renderContradictions();
  if (elements.rationale && elements.rationale.value !== form.rationale) elements.rationale.value = form.rationale;
  const missing = missingAnswers();
  elements.submit.setAttribute("aria-disabled", String(missing.length > 0));
  elements.missing.textContent = missing.length ? `Still to answer: ${missing.map((item) => item.label).join(", ")}.` : "";
  elements.missing.classList.remove("insist");
}
