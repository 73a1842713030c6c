/* What every part of the annotator's workspace shares: the server's configuration, the page's elements and
 * the state on screen. */

export const config = JSON.parse(document.getElementById("workspace-config").textContent);
export const byId = (id) => document.getElementById(id);

export const elements = {
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
  criteriaWarning: byId("criteria-warning"),
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
  flag: byId("flag"),
  flagDialog: byId("flag-dialog"),
  flagForm: byId("flag-form"),
  flagText: byId("flag-text"),
  flagTextNeed: byId("flag-text-need"),
  flagMissing: byId("flag-missing"),
  shortcutSheet: byId("shortcut-sheet"),
  shortcutsButton: byId("shortcuts-button"),
};

export function emptyForm() {
  return { choice: null, strength: null, criteria: {}, rationale: "" };
}

export const state = {
  mode: "loading", // loading | pair | edit | done
  current: null, // the pair on screen (a /next/ payload)
  ahead: null, // a promise of the next pair (or the end), fetched while the current one is read
  doneReason: "",
  progressBase: null, // {progress, storedBefore} from the latest pair shown
  mine: null, // {remaining_for_you, done_total, skipsBefore} counted when the page opened
  skips: 0, // pairs skipped on this page
  form: emptyForm(),
  awaitingStrength: false,
  diff: false,
  edit: null, // {index, judgment, saved: {form, awaitingStrength}}
};
