// eChat operator desk: live queue, thread and MT statuses from server-sent events (the reply's counter
// and photo picker are compose.js). Everything the server sends is put in the page as text, never as HTML.
(function () {
  "use strict";

  var root = document.getElementById("desk");
  if (!root) { return; }

  function byId(id) { return document.getElementById(id); }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function announce(text) {
    var live = byId("desk-live");
    if (live) { live.textContent = text; }
  }

  // --- the queue --------------------------------------------------------------------------------

  function queueItem(item) {
    var li = element("li", "queue-item status-" + item.status + (item.overdue ? " overdue" : ""));
    li.setAttribute("data-conversation-id", String(item.conversation_id));
    li.setAttribute("data-status", item.status);
    li.setAttribute("data-waiting-since", item.waiting_since || "");
    if (String(item.conversation_id) === root.getAttribute("data-selected")) { li.classList.add("current"); }
    var link = element("a");
    link.href = "/desk?c=" + encodeURIComponent(item.conversation_id);
    link.appendChild(element("span", "who", item.label));
    link.appendChild(element("span", "flag", root.getAttribute("data-overdue-label")));
    link.appendChild(element("span", "state", item.status_label));
    link.appendChild(element("span", "snippet", item.last_text));
    link.appendChild(element("time", null, item.last_at));
    li.appendChild(link);
    return li;
  }

  function findQueueItem(conversationId) {
    return document.querySelector('.queue-item[data-conversation-id="' + String(conversationId) + '"]');
  }

  function refreshEmpty() {
    var queue = byId("queue");
    var empty = byId("queue-empty");
    if (queue && empty) { empty.hidden = queue.children.length > 0; }
  }

  function onAssigned(item) {
    var queue = byId("queue");
    if (!queue) { return; }
    var fresh = queueItem(item);
    var existing = findQueueItem(item.conversation_id);
    if (existing) {
      queue.replaceChild(fresh, existing);
    } else {
      queue.appendChild(fresh);
      announce(root.getAttribute("data-new-label") + ": " + item.label);
    }
    refreshEmpty();
  }

  function onUnassigned(data) {
    var existing = findQueueItem(data.conversation_id);
    if (existing) { existing.parentNode.removeChild(existing); }
    refreshEmpty();
  }

  function onMO(data) {
    var item = findQueueItem(data.conversation_id);
    if (item) {
      var snippet = item.querySelector(".snippet");
      if (snippet) { snippet.textContent = data.text; }
      var time = item.querySelector("time");
      if (time) { time.textContent = data.at; }
      var state = item.querySelector(".state");
      if (state) { state.textContent = data.status_label; }
      if (item.getAttribute("data-status") !== "waiting") {
        item.setAttribute("data-status", "waiting");
        item.setAttribute("data-waiting-since", new Date().toISOString());
      }
      item.classList.remove("status-open");
      item.classList.add("status-waiting");
    }
    var thread = byId("thread");
    if (thread && thread.getAttribute("data-conversation-id") === String(data.conversation_id)) {
      if (byId("reply-held")) {  // the client may have accepted or confirmed: read the state again
        window.location.reload();
        return;
      }
      var li = element("li", "msg mo");
      li.appendChild(element("p", "text", data.text));
      var meta = element("p", "meta");
      meta.appendChild(element("time", null, data.at));
      li.appendChild(meta);
      thread.appendChild(li);
      li.scrollIntoView({ block: "nearest" });
    }
  }

  function onMT(data) {
    var holders = document.querySelectorAll('[data-mt-id="' + String(data.id) + '"] .mt-status');
    holders.forEach(function (badge) {
      badge.textContent = data.label;
      badge.className = "mt-status status-" + data.status;
      // why it failed (UNDELIV, refused by policy...), under the message
      var li = badge.closest("li");
      if (li && data.failure && !li.querySelector(".mt-failure")) {
        var reason = element("p", "mt-failure", data.failure);
        reason.setAttribute("role", "note");
        li.appendChild(reason);
      }
    });
    var notice = byId("desk-notice");
    if (notice && notice.getAttribute("data-mt-id") === String(data.id)) {
      // "Reply queued" no longer holds: the notice now reads "Your reply: <live status>".
      var text = notice.querySelector(".notice-text");
      if (text) { text.textContent = notice.getAttribute("data-status-label"); }
      if (data.final) { fadeNotice(); }
    }
  }

  // --- the notice after an action ("reply queued"): it follows its MT's status, then fades ------

  var NOTICE_SHOWN_MS = 4000;
  var NOTICE_FADE_MS = 700;

  function fadeNotice() {
    var notice = byId("desk-notice");
    if (!notice || notice.hasAttribute("data-fading")) { return; }
    notice.setAttribute("data-fading", "yes");
    window.setTimeout(function () {
      notice.classList.add("fading");
      window.setTimeout(function () {
        if (notice.parentNode) { notice.parentNode.removeChild(notice); }
      }, NOTICE_FADE_MS);
    }, NOTICE_SHOWN_MS);
  }

  function settleNotice() {
    var notice = byId("desk-notice");
    if (!notice) { return; }
    // A notice without an MT (closed, saved), or whose MT is already final, has nothing left to show.
    if (!notice.hasAttribute("data-mt-id") || notice.getAttribute("data-final") === "yes") { fadeNotice(); }
  }

  // Overdue flags follow the clock in the page (no request).
  function flagOverdue() {
    var limit = Number(root.getAttribute("data-overdue-seconds") || "0") * 1000;
    if (!limit) { return; }
    var now = Date.now();
    document.querySelectorAll('.queue-item[data-status="waiting"]').forEach(function (item) {
      var since = Date.parse(item.getAttribute("data-waiting-since") || "");
      if (!isNaN(since) && now - since > limit) { item.classList.add("overdue"); }
    });
  }

  // The server's word on my presence (I left the desk, or chose another in another tab).
  function onPresence(data) {
    var select = byId("presence");
    if (!select || !data.presence) { return; }
    select.value = data.presence;
    select.className = "presence-" + data.presence;
  }

  // --- the live stream --------------------------------------------------------------------------

  function listen(url) {
    if (!window.EventSource) { return; }
    var source = new EventSource(url);
    function on(name, handler) {
      source.addEventListener(name, function (event) {
        var data;
        try { data = JSON.parse(event.data); } catch (error) { return; }
        handler(data);
      });
    }
    on("ready", function (data) {
      onPresence(data);
      root.setAttribute("data-live", "yes");
    });
    on("presence", onPresence);
    on("assigned", onAssigned);
    on("unassigned", onUnassigned);
    on("mo", onMO);
    on("mt", onMT);
    // A form on its way (the sign-out button above all) navigates by itself: the stream's own
    // sign-out must not cut that navigation short.
    var submitting = false;
    document.addEventListener("submit", function (event) {
      if (!event.defaultPrevented) { submitting = true; }
    });
    on("signout", function () {
      source.close();
      if (!submitting) { window.location.assign("/login"); }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  var stream = root.getAttribute("data-stream");
  if (stream) { listen(stream); }
  flagOverdue();
  settleNotice();
  window.setInterval(flagOverdue, 5000);
  var thread = byId("thread");
  if (thread && thread.lastElementChild) { thread.lastElementChild.scrollIntoView({ block: "nearest" }); }
})();
