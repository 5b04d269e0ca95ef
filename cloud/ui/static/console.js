// AutoGLM Edge console: live parts by polling, and confirmations. Plain JS, no build step.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var ms = parseInt(el.getAttribute("data-interval"), 10) || 3000;
    function busy() {
      // someone is in the region (focus) or has typed into one of its fields and not sent it
      if (el.contains(document.activeElement)) { return true; }
      var fields = el.querySelectorAll("input, textarea");
      for (var i = 0; i < fields.length; i++) {
        var f = fields[i];
        if (f.type !== "hidden" && f.type !== "submit" && f.value !== f.defaultValue) { return true; }
      }
      return false;
    }
    function tick() {
      // Never replace a region while someone types in it or the tab is hidden.
      if (document.hidden || busy()) { return setTimeout(tick, ms); }
      fetch(url, { credentials: "same-origin", headers: { "X-Console-Poll": "1" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          // checked again: a poll sent before someone clicked into the region lands after it
          if (html !== null && html !== undefined && !busy()) {
            el.innerHTML = html;
            el.setAttribute("data-updated", String(Date.now()));
          }
        })
        .catch(function () { /* offline for a moment: keep the last view */ })
        .then(function () { setTimeout(tick, ms); });
    }
    setTimeout(tick, ms);
  }
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { ev.preventDefault(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
