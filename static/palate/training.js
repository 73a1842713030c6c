// Training run page: live loss and accuracy charts (redrawn after each htmx poll of #run-live), a search
// run's trials against each hyperparameter, and the evaluation report (calibration, length bias, score
// histogram). Plotly comes from vendor/plotly.min.js.
(function () {
  "use strict";
  if (typeof Plotly === "undefined") return;

  const { MUTED, LINE, ACCENT, GOOD, BAD, CONFIG, axis } = window.PalateCharts;
  // Charts with a title and a legend above them.
  const layout = (extra) => window.PalateCharts.layout(Object.assign({
    margin: { l: 8, r: 16, t: 28, b: 40 },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { color: MUTED } },
  }, extra));
  // Redrawn every 2 s while the run goes on: no toolbar over the legend (a zoom would not last anyway).
  const LIVE_CONFIG = Object.assign({}, CONFIG, { displayModeBar: false });
  const read = (id) => { const node = document.getElementById(id); return node ? JSON.parse(node.textContent) : null; };

  function empty(id, text) {
    const node = document.getElementById(id);
    if (node) node.innerHTML = '<p class="chart-empty">' + text + "</p>";
  }

  // A moving average, so a noisy per-step curve shows its trend (the raw points stay, faint).
  function smooth(values, width) {
    const out = [];
    let sum = 0;
    const window = [];
    values.forEach((value) => {
      window.push(value); sum += value;
      if (window.length > width) sum -= window.shift();
      out.push(sum / window.length);
    });
    return out;
  }

  function series(metrics, key) {
    const rows = metrics.filter((entry) => typeof entry[key] === "number");
    return { x: rows.map((entry) => entry.step), y: rows.map((entry) => entry[key]) };
  }

  function drawLive() {
    const metrics = read("run-metrics") || [];
    const live = document.getElementById("run-live");
    const noSteps = live && live.dataset.finished === "true"
      ? "No steps were recorded: the run ended before its first step."
      : "The curves appear with the first steps.";
    [["chart-loss", "loss", "eval_loss", "Loss"], ["chart-accuracy", "accuracy", "eval_accuracy", "Accuracy"]].forEach(([id, key, evalKey, title]) => {
      const node = document.getElementById(id);
      if (!node) return;
      const train = series(metrics, key);
      const held = series(metrics, evalKey);
      if (!train.x.length) { empty(id, noSteps); return; }
      // The waiting text goes before the first plot, or it would push the plot down inside its box.
      if (node.querySelector(".chart-empty")) node.replaceChildren();
      const width = Math.max(1, Math.round(train.x.length / 25));
      const traces = [
        { x: train.x, y: train.y, mode: "lines", name: "train (each step)", line: { color: ACCENT, width: 1 }, opacity: 0.25, hovertemplate: "step %{x}: %{y:.3f}<extra></extra>" },
        { x: train.x, y: smooth(train.y, width), mode: "lines", name: "train (moving average)", line: { color: ACCENT, width: 2 }, hovertemplate: "step %{x}: %{y:.3f}<extra></extra>" },
      ];
      if (held.x.length) traces.push({ x: held.x, y: held.y, mode: "lines+markers", name: "held out", line: { color: GOOD, width: 2 }, marker: { size: 7 }, hovertemplate: "step %{x}: %{y:.3f}<extra>held out</extra>" });
      const yaxis = key === "accuracy" ? axis({ range: [0, 1.02], tickformat: ".0%" }) : axis({ rangemode: "tozero" });
      Plotly.react(node, traces, layout({ xaxis: axis({ title: { text: "step", font: { color: MUTED } } }), yaxis: yaxis }), LIVE_CONFIG);
    });
  }

  function drawEvaluation() {
    const data = read("run-data");
    if (!data || !data.evaluation) return;
    const evaluation = data.evaluation;
    const calibration = (evaluation.calibration || []).filter((bin) => bin.count > 0);
    if (document.getElementById("chart-calibration")) {
      if (!calibration.length) empty("chart-calibration", "No held-out pairs.");
      else Plotly.react("chart-calibration", [
        { x: [0.5, 1], y: [0.5, 1], mode: "lines", name: "perfect", line: { color: LINE, dash: "dot" }, hoverinfo: "skip" },
        { x: calibration.map((bin) => bin.confidence), y: calibration.map((bin) => bin.accuracy), text: calibration.map((bin) => bin.count + " pairs"), mode: "lines+markers", name: "model", line: { color: ACCENT }, marker: { size: calibration.map((bin) => 6 + Math.min(14, Math.sqrt(bin.count))) }, hovertemplate: "confidence %{x:.2f}, right %{y:.2f} (%{text})<extra></extra>" },
      ], layout({ xaxis: axis({ range: [0.5, 1], title: { text: "confidence in the preferred response", font: { color: MUTED } } }), yaxis: axis({ range: [0, 1.02], title: { text: "share ranked right", font: { color: MUTED } } }) }), CONFIG);
    }
    const bias = evaluation.length_bias || {};
    if (document.getElementById("chart-length")) {
      const bars = [["chosen is shorter", bias.accuracy_when_chosen_shorter, bias.count_chosen_shorter], ["chosen is longer", bias.accuracy_when_chosen_longer, bias.count_chosen_longer]].filter((bar) => typeof bar[1] === "number");
      if (!bars.length) empty("chart-length", "No pairs of different lengths.");
      else Plotly.react("chart-length", [{
        type: "bar", x: bars.map((bar) => bar[0]), y: bars.map((bar) => bar[1]), text: bars.map((bar) => Math.round(bar[1] * 100) + "% of " + bar[2]), textposition: "outside", cliponaxis: false,
        marker: { color: bars.map((bar) => (bar[1] >= 0.5 ? ACCENT : BAD)) }, hovertemplate: "%{x}: %{y:.1%}<extra></extra>",
      }], layout({ xaxis: axis({}), yaxis: axis({ range: [0, 1.15], tickformat: ".0%", title: { text: "accuracy", font: { color: MUTED } } }), showlegend: false }), CONFIG);
    }
    const histogram = evaluation.histogram || {};
    if (document.getElementById("chart-histogram")) {
      const edges = histogram.edges || [];
      if (edges.length < 2) empty("chart-histogram", "No scores.");
      else {
        const centres = edges.slice(0, -1).map((edge, index) => (edge + edges[index + 1]) / 2);
        const width = edges[1] - edges[0];
        Plotly.react("chart-histogram", [
          { type: "bar", x: centres, y: histogram.chosen, width: width, name: "chosen", marker: { color: GOOD }, opacity: 0.6, hovertemplate: "%{y} chosen near %{x:.2f}<extra></extra>" },
          { type: "bar", x: centres, y: histogram.rejected, width: width, name: "rejected", marker: { color: BAD }, opacity: 0.6, hovertemplate: "%{y} rejected near %{x:.2f}<extra></extra>" },
        ], layout({ barmode: "overlay", bargap: 0, xaxis: axis({ title: { text: "reward", font: { color: MUTED } } }), yaxis: axis({ title: { text: "responses", font: { color: MUTED } } }) }), CONFIG);
      }
    }
  }

  // A search run: each trial's validation figure against each searched hyperparameter, one small chart each.
  const OUTCOMES = { succeeded: "complete", pruned: "pruned", cancelled: "stopped" };
  // A log axis labelled at 1, 2 and 5 times the powers of ten the values span (Plotly labels every digit).
  function logTicks(values) {
    const low = Math.floor(Math.log10(Math.min.apply(null, values)));
    const high = Math.ceil(Math.log10(Math.max.apply(null, values)));
    const ticks = [];
    for (let power = low; power <= high; power += 1) [1, 2, 5].forEach((digit) => ticks.push(digit * Math.pow(10, power)));
    return { tickvals: ticks, ticktext: ticks.map((tick) => tick.toExponential(0).replace("e-", "e−")) };
  }

  function drawTrials() {
    const data = read("run-trials");
    if (!data) return;
    const metric = data.search.metric;
    const shown = data.trials.filter((trial) => typeof trial[metric] === "number");
    data.dimensions.forEach((dimension) => {
      const id = "chart-trial-" + dimension.name;
      const node = document.getElementById(id);
      if (!node) return;
      const points = shown.filter((trial) => typeof trial.params[dimension.name] === "number");
      if (!points.length) { empty(id, "Each trial shows here once it has been evaluated."); return; }
      if (node.querySelector(".chart-empty")) node.replaceChildren();
      const group = (test) => points.filter(test);
      const trace = (trials, name, color, size, symbol) => ({
        x: trials.map((trial) => trial.params[dimension.name]),
        y: trials.map((trial) => trial[metric]),
        text: trials.map((trial) => "trial #" + trial.number + " (" + (trial.best ? "kept" : OUTCOMES[trial.outcome] || trial.outcome) + ")"),
        mode: "markers", type: "scatter", name: name,
        marker: { color: color, size: size, symbol: symbol, line: { color: "#fff", width: 1 } },
        hovertemplate: "%{text}<br>" + dimension.label + " %{x:.3g}: " + metric + " %{y:.3f}<extra></extra>",
      });
      const traces = [
        trace(group((trial) => !trial.best && trial.outcome !== "pruned"), "trial", ACCENT, 9, "circle"),
        trace(group((trial) => trial.outcome === "pruned"), "pruned", MUTED, 8, "x"),
        trace(group((trial) => trial.best), "kept", GOOD, 13, "star"),
      ].filter((item) => item.x.length);
      const yaxis = metric === "accuracy" ? axis({ range: [0, 1.05], tickformat: ".0%" }) : axis({ rangemode: "tozero" });
      const xaxis = axis({ type: dimension.log ? "log" : "linear", exponentformat: "e", title: { text: dimension.label.toLowerCase(), font: { color: MUTED } } });
      if (dimension.log) Object.assign(xaxis, logTicks(points.map((trial) => trial.params[dimension.name])));
      Plotly.react(node, traces, layout({ xaxis: xaxis, yaxis: yaxis }), LIVE_CONFIG);
    });
  }

  const initial = read("run-data");
  const wasFinished = initial && ["succeeded", "failed", "cancelled"].includes(initial.status);
  // After the poll's swap has settled (an outerHTML swap reports the replaced, detached element).
  document.body.addEventListener("htmx:afterSettle", () => {
    const live = document.getElementById("run-live");
    if (!live) return;
    // A run that just finished: reload once for its evaluation report and its buttons.
    if (!wasFinished && !live.hasAttribute("hx-get")) { window.location.reload(); return; }
    drawLive();
    drawTrials();
  });
  drawLive();
  drawTrials();
  drawEvaluation();
})();
