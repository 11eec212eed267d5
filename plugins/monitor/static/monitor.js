// eChat live monitor: rows from server-sent events, coalesced and drawn once per animation frame; the
// elapsed time and the overdue colour ticking every second from each row's timestamp, no reload.
// Everything the server sends is put in the page as text, never as HTML.
(function () {
  "use strict";

  var root = document.getElementById("monitor");
  if (!root) { return; }
  var body = document.getElementById("monitor-rows");
  var thresholds = JSON.parse(root.getAttribute("data-thresholds") || "{}");
  var defaultThreshold = Number(root.getAttribute("data-default-threshold")) || 120;
  var labels = JSON.parse(root.getAttribute("data-state-labels") || "{}");
  var filters = JSON.parse(root.getAttribute("data-filters") || "{}");
  var selectLabel = root.getAttribute("data-select-label") || "";
  var pendingRows = {};
  var pendingGone = {};
  var pendingOperators = null;
  var scheduled = false;
  // panel.js's grouping; a panel.js cached from before it had one writes plain digits
  var number = (window.echat && window.echat.number) || String;

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function threshold(service) {
    var found = thresholds[service || ""];
    return (typeof found === "number" ? found : defaultThreshold) * 1000;
  }

  // The row's colour now (the rule of gatewayd.store.repo_monitor.monitor_state).
  function stateOf(tr, now) {
    if (tr.getAttribute("data-status") === "open") { return "answered"; }
    var waiting = tr.getAttribute("data-waiting-since");
    if (waiting && now - Date.parse(waiting) > threshold(tr.getAttribute("data-service"))) { return "overdue"; }
    return tr.getAttribute("data-operator-id") ? "assigned" : "waiting";
  }

  function elapsed(ms) {
    var seconds = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (m < 10 ? "0" : "") + m, ss = (s < 10 ? "0" : "") + s;
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function paint(tr, now) {
    var state = stateOf(tr, now);
    if (tr.getAttribute("data-state") !== state) {
      tr.setAttribute("data-state", state);
      tr.className = "state-" + state;
      var badge = tr.querySelector(".state .badge");
      if (badge) { badge.textContent = labels[state] || state; }
    }
    var time = tr.querySelector(".elapsed time");
    if (time) { time.textContent = elapsed(now - Date.parse(tr.getAttribute("data-since"))); }
  }

  function cell(className, text) { return element("td", className, text); }

  function build(row) {
    var tr = element("tr");
    tr.id = "conversation-" + row.i;
    tr.setAttribute("data-conversation-id", String(row.i));
    tr.setAttribute("data-status", row.s);
    tr.setAttribute("data-service", row.v || "");
    tr.setAttribute("data-operator-id", row.o ? String(row.o) : "");
    tr.setAttribute("data-waiting-since", row.w || "");
    tr.setAttribute("data-since", row.t);
    var pick = cell("pick");
    var box = element("input");
    box.type = "checkbox";
    box.name = "conversation";
    box.value = String(row.i);
    box.setAttribute("form", "reassign");
    box.setAttribute("aria-label", selectLabel + " " + row.l);
    pick.appendChild(box);
    tr.appendChild(pick);
    tr.appendChild(cell("who", row.l));
    var state = cell("state");
    state.appendChild(element("span", "badge", ""));
    tr.appendChild(state);
    var when = cell("elapsed");
    var time = element("time");
    time.setAttribute("datetime", row.t);
    when.appendChild(time);
    tr.appendChild(when);
    tr.appendChild(cell("operator", row.n || "—"));
    tr.appendChild(cell("service", (row.v || "—") + " · " + row.c));
    tr.appendChild(cell("carrier", row.k || "—"));
    var last = cell("last-mt", row.m ? null : "—");
    if (row.m) {
      last.appendChild(element("span", "mt-text", row.m));
      last.appendChild(document.createTextNode(" "));
      last.appendChild(element("span", "mt-status mt-" + row.d, row.dl));
    }
    tr.appendChild(last);
    return tr;
  }

  function counts() {
    var totals = { waiting: 0, assigned: 0, answered: 0, overdue: 0 };
    var rows = body.children;
    for (var i = 0; i < rows.length; i++) {
      var state = rows[i].getAttribute("data-state");
      if (state in totals) { totals[state] += 1; }
    }
    Object.keys(totals).forEach(function (state) {
      var node = document.getElementById("count-" + state);
      if (node) { node.textContent = number(totals[state]); }
    });
    document.getElementById("count-total").textContent = number(rows.length);
    document.getElementById("monitor-empty").hidden = rows.length > 0;
  }

  function drawOperators(list) {
    var strip = document.getElementById("operators");
    var fresh = document.createDocumentFragment();
    list.forEach(function (op) {
      var li = element("li", "operator presence-" + op.p);
      li.setAttribute("data-account-id", String(op.i));
      li.appendChild(element("span", "name", op.n));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(element("span", "presence", op.pl));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(element("span", "load", op.c + "/" + op.m));
      fresh.appendChild(li);
    });
    strip.textContent = "";
    strip.appendChild(fresh);
  }

  function flush() {
    scheduled = false;
    var now = Date.now();
    Object.keys(pendingGone).forEach(function (id) {
      var tr = document.getElementById("conversation-" + id);
      if (tr) { tr.remove(); }
    });
    Object.keys(pendingRows).forEach(function (id) {
      var row = pendingRows[id];
      var fresh = build(row);
      var existing = document.getElementById("conversation-" + id);
      if (existing) {
        var box = existing.querySelector("input[type=checkbox]");
        if (box && box.checked) { fresh.querySelector("input[type=checkbox]").checked = true; }
        body.replaceChild(fresh, existing);
      } else {
        body.appendChild(fresh);
      }
      paint(fresh, now);
    });
    if (pendingOperators) { drawOperators(pendingOperators); }
    pendingRows = {};
    pendingGone = {};
    pendingOperators = null;
    counts();
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      window.requestAnimationFrame(flush);
    }
  }

  function tick() {
    var now = Date.now();
    var rows = body.children;
    for (var i = 0; i < rows.length; i++) { paint(rows[i], now); }
    if (filters.state) {  // a row that changed colour by itself may leave a state-filtered view
      for (var j = rows.length - 1; j >= 0; j--) {
        if (rows[j].getAttribute("data-state") !== filters.state) { rows[j].remove(); }
      }
    }
    counts();
  }

  var pickAll = document.getElementById("pick-all");
  if (pickAll) {
    pickAll.addEventListener("change", function () {
      body.querySelectorAll("input[type=checkbox]").forEach(function (box) { box.checked = pickAll.checked; });
    });
  }

  // The ticked rows go as one field (a form carries a limited number of fields).
  var reassign = document.getElementById("reassign");
  if (reassign) {
    reassign.addEventListener("submit", function () {
      var ids = [];
      body.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
        ids.push(box.value);
        box.removeAttribute("form");
      });
      document.getElementById("reassign-ids").value = ids.join(",");
    });
  }

  tick();
  window.setInterval(tick, 1000);

  if (!window.EventSource) { return; }
  var source = new EventSource(root.getAttribute("data-stream"));
  source.addEventListener("rows", function (event) {
    var data = JSON.parse(event.data);
    data.gone.forEach(function (id) { pendingGone[id] = true; delete pendingRows[id]; });
    data.rows.forEach(function (row) { pendingRows[row.i] = row; delete pendingGone[row.i]; });
    schedule();
  });
  source.addEventListener("operators", function (event) {
    pendingOperators = JSON.parse(event.data).operators;
    schedule();
  });
  source.addEventListener("ready", function () { root.setAttribute("data-live", "1"); });
  source.addEventListener("signout", function () {
    source.close();
    window.location.assign("/login?next=" + encodeURIComponent("/admin/monitor"));
  });
})();
