// Quality dashboard: sortable tables, and the charts (alpha over time, Cohen's kappa heatmap, position bias).
// Plotly is served from the installed plotly package (vendor/plotly.min.js); the data comes from the page.
(function () {
  "use strict";

  // Sorting: a click on a column's button sorts by the cells' data-value (numbers, or text with
  // data-kind="text"); empty values always go last. aria-sort on the header says which way.
  function sortBy(button) {
    const header = button.closest("th");
    const table = header.closest("table");
    const body = table.tBodies[0];
    const column = Array.prototype.indexOf.call(header.parentNode.children, header);
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const text = button.dataset.kind === "text";
    table.querySelectorAll("thead th[aria-sort]").forEach((other) => other.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const value = (row) => row.children[column].dataset.value || "";
    const rows = Array.from(body.rows);
    rows.sort((first, second) => {
      const a = value(first);
      const b = value(second);
      if (a === "" || b === "") return (a === "") - (b === "");
      const order = text ? a.localeCompare(b) : Number(a) - Number(b);
      return ascending ? order : -order;
    });
    rows.forEach((row) => body.appendChild(row));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("table.sortable th button.sort");
    if (button) sortBy(button);
  });

  const source = document.getElementById("quality-data");
  if (!source || typeof Plotly === "undefined") return;
  const data = JSON.parse(source.textContent);

  const { MUTED, ACCENT, BAD, CONFIG, layout: baseLayout, axis, label } = window.PalateCharts;
  const percent = (value) => (value === null ? "–" : Math.round(value * 100) + "%");

  // One point alone would get an axis of milliseconds around it; show the days either side instead.
  function aroundOneDay(period) {
    const day = new Date(period + "T00:00:00Z").getTime();
    const width = 86400000;
    return { range: [new Date(day - width).toISOString(), new Date(day + width).toISOString()], dtick: width };
  }

  function overTimeChart() {
    const element = document.getElementById("chart-over-time");
    const points = data.overTime.points;
    if (!element || !points.length) return;
    const values = points.map((point) => point.alpha).filter((value) => value !== null);
    const low = Math.min(0, data.targetAlpha - 0.1, ...values);
    Plotly.newPlot(element, [{
      type: "scatter", mode: points.length > 1 ? "lines+markers" : "markers", name: "α",
      x: points.map((point) => point.period), y: points.map((point) => point.alpha),
      customdata: points.map((point) => point.judgments),
      line: { color: ACCENT, width: 2 }, marker: { color: ACCENT, size: 6 },
      hovertemplate: "α %{y:.3f} on %{customdata} judgments<br>up to %{x|%d %b %Y}<extra></extra>",
    }], baseLayout({
      height: 280,
      xaxis: axis(Object.assign({ type: "date", showgrid: false, tickformat: "%-d %b %Y" }, points.length === 1 ? aroundOneDay(points[0].period) : {})),
      yaxis: axis({ title: { text: "Krippendorff's α", font: { color: MUTED } }, range: [low, 1.02] }),
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: data.targetAlpha, y1: data.targetAlpha, line: { color: BAD, width: 1.5, dash: "dash" } }],
      annotations: [{ xref: "paper", x: 1, xanchor: "right", y: data.targetAlpha, yanchor: "bottom", text: "target " + data.targetAlpha.toFixed(3), showarrow: false, font: { color: BAD, size: 11 } }],
    }), CONFIG);
  }

  function kappaChart() {
    const element = document.getElementById("chart-kappa");
    const kappa = data.kappa;
    if (!element || kappa.annotators.length < 2) return;
    const names = kappa.annotators.map(label);
    const count = names.length;
    Plotly.newPlot(element, [{
      type: "heatmap", x: names, y: names, z: kappa.matrix, customdata: kappa.shared,
      zmin: 0, zmax: 1, xgap: 1, ygap: 1,
      colorscale: [[0, "#fdecea"], [0.5, "#fff5e0"], [1, ACCENT]],
      colorbar: { thickness: 10, outlinewidth: 0, tickfont: { color: MUTED } },
      texttemplate: count <= 12 ? "%{z:.2f}" : "",
      hovertemplate: "%{y} × %{x}<br>κ %{z:.3f} on %{customdata} shared pairs<extra></extra>",
      hoverongaps: false,
    }], baseLayout({
      height: Math.min(720, Math.max(280, 28 * count + 110)),
      xaxis: axis({ type: "category", showgrid: false, tickangle: count > 6 ? -45 : 0 }),
      yaxis: axis({ type: "category", showgrid: false, autorange: "reversed" }),
    }), CONFIG);
  }

  function positionChart() {
    const element = document.getElementById("chart-position");
    const rows = data.annotators.filter((row) => row.leftShare !== null);
    if (!element || !rows.length) return;
    const limit = data.maxPositionBias;
    const names = rows.map((row) => label(row.username));
    const line = (x, colour, dash) => ({ type: "line", x0: x, x1: x, yref: "paper", y0: 0, y1: 1, line: { color: colour, width: 1.5, dash } });
    Plotly.newPlot(element, [{
      type: "bar", orientation: "h", x: rows.map((row) => row.leftShare), y: names,
      marker: { color: rows.map((row) => (row.flagged ? BAD : ACCENT)) },
      customdata: rows.map((row) => [row.sided, row.pValue === null ? "–" : row.pValue.toPrecision(2)]),
      text: rows.map((row) => percent(row.leftShare)), textposition: "outside", cliponaxis: false,
      hovertemplate: "%{y}: left %{x:.0%} of %{customdata[0]} A/B choices<br>p = %{customdata[1]}<extra></extra>",
    }], baseLayout({
      height: Math.min(720, Math.max(220, 30 * rows.length + 80)),
      xaxis: axis({ range: [0, 1.08], tickformat: ".0%", dtick: 0.25, title: { text: "Chose the left-shown response", font: { color: MUTED } } }),
      yaxis: axis({ type: "category", autorange: "reversed", showgrid: false }),
      bargap: 0.35,
      shapes: [line(0.5, MUTED, "dot"), line(limit, BAD, "dash"), line(1 - limit, BAD, "dash")],
    }), CONFIG);
  }

  overTimeChart();
  kappaChart();
  positionChart();
})();
