// The revenue page: draws the gross per hour or day with uPlot (one chart per currency, the
// amounts scaled from minor units for display only), and fetches the figures again (htmx)
// whenever the server's event stream says a money movement reached the ledger.
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("chart-data");
    var box = document.getElementById("charts");
    if (!source || !box || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    box.replaceChildren();
    data.currencies.forEach(function (c) {
      var figure = document.createElement("figure");
      figure.className = "chart";
      var caption = document.createElement("figcaption");
      caption.textContent = "Gross per " + (data.hourly ? "hour" : "day") + ", " + c.currency;
      figure.appendChild(caption);
      box.appendChild(figure);
      var scale = Math.pow(10, c.exponent);
      var shown = function (v) { return v == null ? "-" : (v / scale).toFixed(c.exponent); };
      var width = Math.max(200, Math.min(box.clientWidth - 20, 1100));
      new uPlot({
        width: width,
        height: 200,
        legend: { show: false },
        series: [{}, { label: c.currency, stroke: "#0b57a4", fill: "rgba(11,87,164,0.15)", value: function (u, v) { return shown(v); } }],
        scales: { x: { time: true, range: [data.start, data.end] } },
        axes: [{}, { size: 70, values: function (u, vals) { return vals.map(shown); } }],
        points: { show: true }
      }, [c.x, c.y], figure);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    draw();
    var live = document.getElementById("live");
    if (!live || typeof EventSource === "undefined") { return; }
    var events = new EventSource(live.dataset.events);
    events.addEventListener("ledger", function () {
      htmx.ajax("GET", live.dataset.figures, { target: "#figures", swap: "innerHTML" });
    });
    document.body.addEventListener("htmx:afterSwap", function (e) {
      if (e.target.id === "figures") {
        draw();
        live.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
      }
    });
  });
})();
