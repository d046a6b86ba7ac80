/* Noaber pages: progressive enhancement, no inline script (the CSP allows 'self' only).
 *
 * 1. Tables become stacked cards on a phone: each data cell gets the text of its column
 *    heading as data-label (the CSS of noaber_base.html shows it below 640 px).
 * 2. Live values refresh themselves: an element with data-live-url is filled every
 *    data-live-seconds from that JSON URL (same origin, the page's cookie); each child with
 *    data-live-field gets the field's already formatted text.
 */
(function () {
  "use strict";

  function stackTables() {
    var tables = document.querySelectorAll("main table");
    Array.prototype.forEach.call(tables, function (table) {
      var rows = table.rows;
      if (!rows.length) { return; }
      var head = rows[0];
      var cells = head.cells;
      var allTh = cells.length > 1 && Array.prototype.every.call(cells, function (c) {
        return c.tagName === "TH";
      });
      if (!allTh) { return; }
      var labels = Array.prototype.map.call(cells, function (c) { return c.textContent.trim(); });
      head.classList.add("stack-head");
      for (var i = 1; i < rows.length; i++) {
        Array.prototype.forEach.call(rows[i].cells, function (cell, j) {
          if (labels[j] && !cell.hasAttribute("data-label")) {
            cell.setAttribute("data-label", labels[j]);
          }
        });
      }
      table.classList.add("stack");
    });
  }

  function refreshLive(box) {
    var url = box.getAttribute("data-live-url");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) {
        var fields = box.querySelectorAll("[data-live-field]");
        Array.prototype.forEach.call(fields, function (el) {
          var key = el.getAttribute("data-live-field");
          if (Object.prototype.hasOwnProperty.call(data, key)) { el.textContent = data[key]; }
        });
        box.setAttribute("data-live-updated", String(Date.now()));
        box.classList.remove("stale");
      })
      .catch(function () { box.classList.add("stale"); });
  }

  function startLive() {
    var boxes = document.querySelectorAll("[data-live-url]");
    Array.prototype.forEach.call(boxes, function (box) {
      var seconds = parseInt(box.getAttribute("data-live-seconds") || "30", 10);
      window.setInterval(function () { refreshLive(box); }, Math.max(seconds, 5) * 1000);
    });
  }

  function start() { stackTables(); startLive(); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
