// Solstice UI: loading, error and focus handling around htmx. Every page
// also works without JavaScript; this only makes it smoother.
(function () {
  "use strict";
  var root = document.documentElement;

  function toast(message) {
    var t = document.getElementById("toast");
    if (!t) { return; }
    t.textContent = message;
    t.hidden = false;
    clearTimeout(t.hideTimer);
    t.hideTimer = setTimeout(function () { t.hidden = true; }, 10000);
  }

  // Move focus to what the page wants read first (an error summary, a
  // flash message, a result), else to the main region, so keyboard and
  // screen-reader users land where the content changed.
  function focusPage(main) {
    var el = document.querySelector("[data-focus]");
    if (el) { el.focus(); return; }
    if (main) {
      var m = document.getElementById("main");
      if (m) { m.focus({ preventScroll: true }); }
    }
  }

  document.addEventListener("htmx:beforeRequest", function (e) {
    root.classList.add("busy");
    var elt = e.detail.elt;
    if (elt && elt.tagName === "FORM") {
      elt.classList.add("is-loading");
      elt.setAttribute("aria-busy", "true");
      elt.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    root.classList.remove("busy");
    var elt = e.detail.elt;
    if (elt && elt.tagName === "FORM") {
      elt.classList.remove("is-loading");
      elt.removeAttribute("aria-busy");
      elt.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
    }
  });

  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var msg = xhr.getResponseHeader("X-Error-Message");
    toast(msg ? decodeURIComponent(msg) : "Solstice could not do that (HTTP " + xhr.status + "). Nothing was changed; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach Solstice: check the connection and try again. Nothing was changed.");
  });
  document.addEventListener("htmx:timeout", function () {
    toast("Solstice took too long to answer. Reload the page to see whether the change was made.");
  });

  document.addEventListener("htmx:afterSettle", function () { focusPage(true); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { focusPage(false); });
  } else {
    focusPage(false);
  }
})();
