// Stanch console: countdowns, and keeping what a person typed when a live region refreshes.
// No inline script anywhere (the Content-Security-Policy forbids it); htmx does the polling.
(function () {
  "use strict";

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-deadline]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.dataset.deadline) - now) / 1000);
      if (isNaN(left)) { return; }
      if (left <= 0) { el.textContent = "deadline passed"; el.classList.add("late"); return; }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + "h " + String(m).padStart(2, "0") + "m" :
        m + "m " + String(s).padStart(2, "0") + "s") + " left";
      el.classList.toggle("soon", left < 300);
    });
  }

  var kept = {};
  document.addEventListener("htmx:beforeSwap", function (evt) {
    kept = {};
    var active = document.activeElement;
    evt.detail.target.querySelectorAll("textarea[id], input[id]:not([type=hidden])").forEach(function (el) {
      if (el.value) { kept[el.id] = el.value; }
    });
    kept.__focus = active && active.id ? active.id : null;
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    Object.keys(kept).forEach(function (id) {
      if (id === "__focus") { return; }
      var el = document.getElementById(id);
      if (el) { el.value = kept[id]; }
    });
    if (kept.__focus) {
      var f = document.getElementById(kept.__focus);
      if (f) { f.focus(); }
    }
    tick();
  });

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
