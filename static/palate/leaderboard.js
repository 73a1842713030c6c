// Leaderboard charts: ratings with intervals, rating over time, observed and predicted win rates.
// Plotly is served from the installed plotly package (vendor/plotly.min.js); the data comes from the page.
(function () {
  "use strict";

  const source = document.getElementById("leaderboard-data");
  if (!source || typeof Plotly === "undefined") return;
  const data = JSON.parse(source.textContent);

  const { MUTED, LINE, ACCENT, CONFIG, layout: baseLayout, axis, label, tick } = window.PalateCharts;
  // One colour per system, in rank order, shared by every chart.
  const PALETTE = ["#4338ca", "#0f766e", "#b45309", "#be123c", "#0369a1", "#7c3aed", "#4d7c0f", "#a21caf", "#475569", "#c2410c"];
  const colour = (index) => PALETTE[index % PALETTE.length];


  function ratingsChart() {
    const rows = data.rows;
    const count = rows.length;
    const position = rows.map((row, index) => count - 1 - index);
    const plain = {
      type: "scatter", mode: "markers", name: data.method === "elo" ? "Elo" : "Bradley-Terry",
      x: rows.map((row) => row.rating), y: position.map((value) => value + 0.12),
      error_x: { type: "data", symmetric: false, array: rows.map((row) => row.upper - row.rating), arrayminus: rows.map((row) => row.rating - row.lower), color: ACCENT, thickness: 2, width: 0 },
      marker: { color: ACCENT, size: 10 },
      customdata: rows.map((row) => [label(row.system), row.lower, row.upper, row.rank]),
      hovertemplate: "<b>%{customdata[0]}</b><br>rating %{x:.0f} (%{customdata[1]:.0f} – %{customdata[2]:.0f})<br>rank %{customdata[3]}<extra></extra>",
    };
    const crowd = {
      type: "scatter", mode: "markers", name: "Crowd-BT",
      x: rows.map((row) => row.crowd_bt_rating), y: position.map((value) => value - 0.12),
      error_x: { type: "data", symmetric: false, array: rows.map((row) => row.crowd_bt_upper - row.crowd_bt_rating), arrayminus: rows.map((row) => row.crowd_bt_rating - row.crowd_bt_lower), color: "#94a3b8", thickness: 1.5, width: 0 },
      marker: { color: "#ffffff", size: 8, line: { color: "#64748b", width: 2 } },
      customdata: rows.map((row) => [label(row.system), row.crowd_bt_lower, row.crowd_bt_upper]),
      hovertemplate: "<b>%{customdata[0]}</b><br>Crowd-BT %{x:.0f} (%{customdata[1]:.0f} – %{customdata[2]:.0f})<extra></extra>",
    };
    Plotly.newPlot("chart-ratings", [crowd, plain], baseLayout({
      height: Math.max(220, 56 * count + 80),
      xaxis: axis({ title: { text: "Rating (Elo scale)", font: { color: MUTED } } }),
      yaxis: axis({ tickvals: position, ticktext: rows.map((row) => tick(row.system)), range: [-0.6, count - 0.4], showgrid: false, zeroline: false }),
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", traceorder: "reversed" },
      margin: { l: 8, r: 16, t: 28, b: 44 },
      shapes: [{ type: "line", x0: 1000, x1: 1000, yref: "paper", y0: 0, y1: 1, line: { color: LINE, width: 1, dash: "dot" } }],
    }), CONFIG);
  }

  function overTimeChart() {
    const overTime = data.overTime;
    if (!overTime.series.length) return;
    const traces = overTime.series.map((series, index) => ({
      type: "scatter", mode: "lines", name: tick(series.system),
      x: overTime.judgments, y: series.rating,
      line: { color: colour(index), width: 2 },
      customdata: overTime.at.map((at) => [label(series.system), at ? new Date(at).toLocaleString() : ""]),
      hovertemplate: "<b>%{customdata[0]}</b><br>%{y:.0f} after %{x} judgments<br>%{customdata[1]}<extra></extra>",
    }));
    Plotly.newPlot("chart-time", traces, baseLayout({
      height: 320,
      xaxis: axis({ title: { text: "Judgments", font: { color: MUTED } } }),
      yaxis: axis({ title: { text: "Rating", font: { color: MUTED } } }),
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      margin: { l: 8, r: 16, t: 28, b: 44 },
    }), CONFIG);
  }

  function heatmap(id, matrix, hoverNoun) {
    const width = document.getElementById(id).clientWidth;
    const labels = data.systems.map(label);
    // On a phone: shorter names on the axes, and no percentages in cells too narrow to hold them.
    const narrow = width < 520;
    const ticks = data.systems.map((system) => tick(system, narrow ? 12 : 24));
    const roomy = width / labels.length >= 70;
    const text = matrix.map((row, i) => row.map((value, j) => (i === j || value === null ? "" : Math.round(value * 100) + "%")));
    const battles = data.battles;
    const custom = matrix.map((row, i) => row.map((_, j) => battles[i][j]));
    Plotly.newPlot(id, [{
      type: "heatmap", z: matrix.map((row, i) => row.map((value, j) => (i === j ? null : value))),
      x: labels, y: labels, zmin: 0, zmax: 1,
      colorscale: [[0, "#b42318"], [0.5, "#f8f9fb"], [1, "#4338ca"]],
      text: text, texttemplate: roomy ? "%{text}" : "", textfont: { size: 12 },
      customdata: custom, xgap: 2, ygap: 2,
      hovertemplate: "<b>%{y}</b> vs %{x}<br>" + hoverNoun + " %{z:.0%}<br>%{customdata} battles<extra></extra>",
      colorbar: { thickness: 10, tickformat: ".0%", outlinewidth: 0, tickfont: { color: MUTED } },
    }], baseLayout({
      height: Math.max(260, 48 * labels.length + 110),
      // Categories even when names look like numbers ("1", "2.0"), which Plotly would otherwise plot as values.
      // Long names would run into each other under narrow columns: slanted, and cut short (the hover label
      // shows them whole).
      xaxis: axis({ type: "category", tickvals: labels, ticktext: ticks, side: "bottom", tickangle: data.systems.some((system) => system.length > 8) || labels.length > 5 ? (narrow ? -60 : -30) : 0, showgrid: false }),
      yaxis: axis({ type: "category", tickvals: labels, ticktext: ticks, autorange: "reversed", showgrid: false }),
      margin: { l: 8, r: 8, t: 8, b: 8 },
    }), CONFIG);
  }

  ratingsChart();
  overTimeChart();
  heatmap("chart-observed", data.observed, "won");
  heatmap("chart-predicted", data.predicted, "expected to win");
})();
