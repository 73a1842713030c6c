// Run page, reward hacking checks: accuracy by which response the humans chose (shorter or longer), and the
// two versions' standardised score histograms overlaid. Reloads once when a batch scoring job finishes, so
// the checks read the new scores.
(function () {
  "use strict";
  const pendingAtLoad = !!document.querySelector("#scoring-job[hx-get]");
  document.body.addEventListener("htmx:afterSwap", () => {
    const card = document.getElementById("scoring-job");
    if (pendingAtLoad && card && !card.hasAttribute("hx-get")) window.location.reload();
  });
  if (typeof Plotly === "undefined") return;
  const node = document.getElementById("reward-checks-data");
  if (!node) return;
  const data = JSON.parse(node.textContent);

  const { MUTED, ACCENT, BAD, CONFIG, axis } = window.PalateCharts;
  // Charts with a title and a legend above them.
  const layout = (extra) => window.PalateCharts.layout(Object.assign({
    margin: { l: 8, r: 16, t: 28, b: 40 },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { color: MUTED } },
  }, extra));
  const empty = (id, text) => { const target = document.getElementById(id); if (target) target.innerHTML = '<p class="chart-empty">' + text + "</p>"; };

  const bias = data.lengthBias || {};
  if (document.getElementById("chart-check-length")) {
    const bars = [["chosen is shorter", bias.accuracy_when_chosen_shorter, bias.pairs_chosen_shorter], ["chosen is longer", bias.accuracy_when_chosen_longer, bias.pairs_chosen_longer]].filter((bar) => typeof bar[1] === "number");
    if (!bars.length) empty("chart-check-length", "No human-decided pairs of different lengths among the scored responses.");
    else Plotly.react("chart-check-length", [{
      type: "bar", x: bars.map((bar) => bar[0]), y: bars.map((bar) => bar[1]), text: bars.map((bar) => Math.round(bar[1] * 100) + "% of " + bar[2]), textposition: "outside", cliponaxis: false,
      marker: { color: bars.map((bar) => (bar[1] >= 0.5 ? ACCENT : BAD)) }, hovertemplate: "%{x}: %{y:.1%}<extra></extra>",
    }], layout({ xaxis: axis({}), yaxis: axis({ range: [0, 1.15], tickformat: ".0%", title: { text: "agreement with humans", font: { color: MUTED } } }), showlegend: false }), CONFIG);
  }

  const histogram = (data.drift || {}).histogram;
  if (document.getElementById("chart-check-drift") && histogram) {
    const edges = histogram.edges;
    const centres = edges.slice(0, -1).map((edge, index) => (edge + edges[index + 1]) / 2);
    const width = edges[1] - edges[0];
    Plotly.react("chart-check-drift", [
      { type: "bar", x: centres, y: histogram.before, width: width, name: "v" + data.previous, marker: { color: MUTED }, opacity: 0.55, hovertemplate: "%{y} responses near %{x:.2f}<extra>v" + data.previous + "</extra>" },
      { type: "bar", x: centres, y: histogram.after, width: width, name: "v" + data.version, marker: { color: ACCENT }, opacity: 0.55, hovertemplate: "%{y} responses near %{x:.2f}<extra>v" + data.version + "</extra>" },
    ], layout({ barmode: "overlay", bargap: 0, xaxis: axis({ title: { text: "standardised score", font: { color: MUTED } } }), yaxis: axis({ title: { text: "responses", font: { color: MUTED } } }) }), CONFIG);
  }
})();
