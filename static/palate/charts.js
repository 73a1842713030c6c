// What every chart shares, read from the stylesheet's custom properties: the colours and font, Plotly's
// config, the base layout and axis, and label() for text from the data. Pages load it after
// vendor/plotly.min.js and before their chart script.
window.PalateCharts = (function () {
  "use strict";
  const style = getComputedStyle(document.documentElement);
  const css = (name, fallback) => (style.getPropertyValue(name) || fallback).trim();
  const theme = {
    TEXT: css("--text", "#1d2433"),
    MUTED: css("--muted", "#5b6475"),
    LINE: css("--line", "#dde1e8"),
    ACCENT: css("--accent", "#4338ca"),
    GOOD: css("--good", "#067647"),
    BAD: css("--bad", "#b42318"),
    FONT: css("--font", "system-ui, sans-serif"),
  };
  theme.CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"] };
  theme.layout = (extra) => Object.assign({
    font: { family: theme.FONT, size: 12, color: theme.TEXT },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    margin: { l: 8, r: 16, t: 8, b: 40 },
    hoverlabel: { font: { family: theme.FONT } },
  }, extra);
  // Plotly draws a subset of HTML in every label, legend and hover text (<a href> becomes a link, <br>, <b>…).
  // Text that came from users or imports (systems, annotators, categories, criteria) passes through here on
  // its way into a chart: as entities it is drawn as the characters it is, and never as markup.
  theme.label = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  // The same text on an axis or in a legend, where a long name would squeeze the plot: cut to ``limit``
  // characters (the hover label keeps the whole name).
  theme.tick = (text, limit = 24) => {
    const characters = Array.from(String(text));
    return theme.label(characters.length > limit ? characters.slice(0, limit - 1).join("") + "…" : characters.join(""));
  };
  theme.axis = (extra) => Object.assign({ gridcolor: theme.LINE, zerolinecolor: theme.LINE, linecolor: theme.LINE, automargin: true, tickfont: { color: theme.MUTED } }, extra);
  return theme;
})();
