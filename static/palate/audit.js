// The audit page's charts: the human win rate (with its 95% interval) and the reward model's mean score of
// its choices against N, and the win rate against the best-of-N KL bound. Redrawn after each htmx poll.
(function () {
  "use strict";
  function draw() {
    const source = document.getElementById("audit-data");
    if (!source || !window.Plotly || !window.PalateCharts) return;
    const theme = window.PalateCharts;
    const rows = JSON.parse(source.textContent).rows;
    const judged = rows.filter((row) => row.win_rate !== null);
    const winTrace = (x) => ({
      x: judged.map(x), y: judged.map((row) => row.win_rate), name: "human win rate", mode: "lines+markers",
      line: { color: theme.ACCENT },
      error_y: { type: "data", symmetric: false, array: judged.map((row) => row.high - row.win_rate),
        arrayminus: judged.map((row) => row.win_rate - row.low), color: theme.ACCENT },
    });
    const scored = rows.filter((row) => row.mean_score !== null);
    const byN = document.getElementById("audit-by-n");
    if (byN) {
      window.Plotly.react(byN, [
        winTrace((row) => row.n),
        { x: scored.map((row) => row.n), y: scored.map((row) => row.mean_score), name: "mean score of choices",
          mode: "lines+markers", yaxis: "y2", line: { color: theme.GOOD, dash: "dot" } },
      ], theme.layout({
        height: 280, legend: { orientation: "h", y: -0.3 },
        xaxis: theme.axis({ title: { text: "N" }, type: "log", tickvals: rows.map((row) => row.n) }),
        yaxis: theme.axis({ title: { text: "win rate" }, range: [0, 1] }),
        yaxis2: theme.axis({ title: { text: "score" }, overlaying: "y", side: "right", showgrid: false, tickformat: ".2~f", nticks: 5 }),
      }), theme.CONFIG);
    }
    const byKl = document.getElementById("audit-by-kl");
    if (byKl) {
      window.Plotly.react(byKl, [winTrace((row) => row.kl_bound)], theme.layout({
        height: 280, showlegend: false,
        xaxis: theme.axis({ title: { text: "KL bound: log N − (N − 1)/N" } }),
        yaxis: theme.axis({ title: { text: "win rate" }, range: [0, 1] }),
      }), theme.CONFIG);
    }
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSwap", draw);
})();
