// eChat mass push: the audience size as the filters change (new-campaign form) and the campaign's
// live progress (its page polls the counters every two seconds while it can still change). Everything
// the server sends is put in the page as text, never as HTML.
(function () {
  "use strict";

  var FILTERS = ["last_pushes", "include_new", "service", "carrier", "country", "active_days"];

  function audience(form) {
    var output = document.getElementById("audience-size");
    var url = form.getAttribute("data-audience-url");
    if (!output || !url) { return; }
    var timer = null;
    var sequence = 0;
    var inFlight = null;
    function update() {
      var mine = ++sequence;
      // a count for filters since changed is of no use (the server gives up on any after a few seconds)
      if (inFlight) { inFlight.abort(); }
      inFlight = window.AbortController ? new window.AbortController() : null;
      var data = new FormData(form);
      var params = new URLSearchParams();
      FILTERS.forEach(function (name) {
        var value = data.get(name);
        if (value !== null) { params.set(name, String(value)); }
      });
      var options = { credentials: "same-origin" };
      if (inFlight) { options.signal = inFlight.signal; }
      window.fetch(url + "?" + params.toString(), options)
        .then(function (response) { return response.json(); })
        .then(function (info) {
          if (mine !== sequence) { return; }
          if (info.errors) {
            output.textContent = Object.keys(info.errors).map(function (key) { return info.errors[key]; }).join(" ");
            output.setAttribute("data-valid", "no");
            return;
          }
          output.textContent = (output.getAttribute("data-label") || "") + " " + info.label;
          output.setAttribute("data-valid", "yes");
          output.setAttribute("data-size", String(info.size));
        })
        .catch(function () { /* aborted, or offline: the "Count audience" button still works */ });
    }
    function later(event) {
      if (event && event.target && FILTERS.indexOf(event.target.name) < 0) { return; }
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(update, 250);
    }
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    update();
  }

  var FINAL = { finished: true, cancelled: true };

  function progress(root) {
    var url = root.getAttribute("data-progress-url");
    var status = document.getElementById("campaign-status");
    var meter = document.getElementById("campaign-meter");
    // A count as the page wrote it (the reader's grouping of three digits: 12,345 or 12.345).
    function grouped(value) {
      return typeof value === "number" && window.echat.number ? window.echat.number(value) : String(value);
    }
    function show(info) {
      Object.keys(info).forEach(function (key) {
        var cell = root.querySelector('[data-figure="' + key + '"]');
        if (cell) { cell.textContent = grouped(info[key]); }
      });
      if (status) {
        status.textContent = info.status_label;
        status.className = "campaign-status status-" + info.status;
      }
      if (meter) {
        meter.max = Math.max(1, info.total);
        meter.value = info.total - info.pending;
      }
      root.setAttribute("data-status", info.status);
      root.querySelectorAll("form[data-action]").forEach(function (form) {
        form.hidden = info.actions.indexOf(form.getAttribute("data-action")) < 0;
      });
    }
    function poll() {
      window.fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (info) {
          if (info) { show(info); }
          // a finished campaign may still hear of deliveries: keep polling, more slowly
          window.setTimeout(poll, info && FINAL[info.status] ? 10000 : 2000);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 2000);
  }

  var form = document.getElementById("campaign-form");
  if (form) { audience(form); }
  var root = document.getElementById("campaign");
  if (root) { progress(root); }
})();
