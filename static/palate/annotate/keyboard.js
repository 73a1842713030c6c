/* Keyboard shortcuts: digits and arrows choose, Shift+digit sets how much better, Enter submits; C goes to
 * the next criterion, where digits and arrows answer that criterion instead. */

import { config, elements, state } from "./workspace.js";

const CHOICE_BY_DIGIT = { 1: "left", 2: "right", 3: "tie", 4: "both_bad" };
const CHOICE_BY_ARROW = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie" };

function isTyping(target) {
  return Boolean(target.closest && target.closest("textarea, input, select, [contenteditable=''], [contenteditable='true']"));
}

function digitOf(event) {
  const match = /^(?:Digit|Numpad)([1-9])$/.exec(event.code || "");
  if (match) return Number(match[1]);
  return /^[1-9]$/.test(event.key) ? Number(event.key) : null;
}

/** Keys to actions: `actions` holds submit, leaveEdit, undo, toggleGuidelines, toggleDiff, openSkipDialog, openFlagDialog,
 * choose, setStrength, setCriterion and focusNextCriterion. */
export function installShortcuts(actions) {
  document.addEventListener("keydown", (event) => onKey(event, actions));
}

function onKey(event, actions) {
  if (event.defaultPrevented || event.isComposing) return;
  if (document.querySelector("dialog[open]")) return; // dialogs keep their own keys (Esc closes them)
  const target = event.target;
  const working = state.mode === "pair" || state.mode === "edit";

  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    if (working && (!isTyping(target) || target === elements.rationale)) {
      event.preventDefault();
      actions.submit();
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
    actions.leaveEdit();
    return;
  }
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (key === "u" && !event.shiftKey && state.mode !== "loading") {
    event.preventDefault();
    actions.undo();
    return;
  }
  if (key === "g" && !event.shiftKey && elements.guidelines) {
    event.preventDefault();
    actions.toggleGuidelines();
    return;
  }
  if (!working) return;
  if (key === "d" && !event.shiftKey) {
    event.preventDefault();
    actions.toggleDiff();
    return;
  }
  if (key === "c" && !event.shiftKey && config.criteria.length) {
    event.preventDefault();
    actions.focusNextCriterion();
    return;
  }
  if (key === "s" && !event.shiftKey && state.mode === "pair") {
    event.preventDefault();
    actions.openSkipDialog();
    return;
  }
  if (key === "f" && !event.shiftKey && state.mode === "pair") {
    event.preventDefault();
    actions.openFlagDialog();
    return;
  }
  if (event.key === "Enter") {
    // Enter on another button or a link does what it always does; on an option not yet chosen it
    // chooses it; everywhere else it submits.
    const control = target.closest && target.closest("a, button, summary");
    if (control && !(control.classList.contains("ws-option") && control.getAttribute("aria-pressed") === "true")) return;
    event.preventDefault();
    actions.submit();
    return;
  }
  const digit = digitOf(event);
  const criterion = target.closest && target.closest(".ws-criterion");
  if (criterion && !event.shiftKey) {
    const value = digit !== null ? CHOICE_BY_DIGIT[digit] : CHOICE_BY_ARROW[event.key];
    if (value) {
      event.preventDefault();
      actions.setCriterion(criterion.dataset.criterion, value, { byKey: true });
      return;
    }
  }
  if (digit !== null) {
    if (event.shiftKey) {
      if (config.strengthScale) {
        event.preventDefault();
        actions.setStrength(digit, { byKey: true });
      }
      return;
    }
    if (state.awaitingStrength && actions.setStrength(digit, { byKey: true })) {
      event.preventDefault();
      return;
    }
    if (CHOICE_BY_DIGIT[digit]) {
      event.preventDefault();
      actions.choose(CHOICE_BY_DIGIT[digit], { byKey: true });
    }
    return;
  }
  if (CHOICE_BY_ARROW[event.key] && !event.shiftKey) {
    // Inside a scrolling panel the arrow keys scroll it.
    if (target.closest && target.closest(".ws-scroll")) return;
    event.preventDefault();
    actions.choose(CHOICE_BY_ARROW[event.key], { byKey: true });
  }
}
