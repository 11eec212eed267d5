// eChat SMS composer, shared by the desk's reply and push and by the mass push: the live counter and
// preview (numbers from smpp.text on the server) and the gallery's photo picker. Everything the
// server sends is put in the page as text, never as HTML.
(function () {
  "use strict";

  function byId(id) { return document.getElementById(id); }

  // A textarea with data-counter is counted as it changes. By default it posts its text (and the
  // conversation or client it is for) to /desk/draft; with data-draft-url it posts its whole form
  // there, and follows every field of that form (the mass push's filters pick the sample client).
  function counter(textarea) {
    var output = byId(textarea.getAttribute("data-counter"));
    if (!output) { return; }
    var preview = byId(textarea.getAttribute("data-preview") || "");
    var previewText = byId((textarea.getAttribute("data-preview") || "") + "-text");
    var clientField = byId(textarea.getAttribute("data-client-field") || "");
    var draftUrl = textarea.getAttribute("data-draft-url");
    var timer = null;
    var sequence = 0;
    function body() {
      if (draftUrl && textarea.form) { return new URLSearchParams(new FormData(textarea.form)); }
      var params = new URLSearchParams();
      params.set("text", textarea.value);
      // The server renders the message variables for this conversation (or client) and counts the
      // rendered text: what the client will receive.
      var conversation = textarea.getAttribute("data-conversation-id");
      if (conversation) { params.set("conversation_id", conversation); }
      if (clientField) { params.set("client_id", clientField.value); }
      return params;
    }
    function update() {
      var mine = ++sequence;
      window.echat.fetch(draftUrl || "/desk/draft", { method: "POST", body: body() })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (info) {
          if (!info || mine !== sequence) { return; }
          output.textContent = info.label;
          output.setAttribute("data-fits", info.fits ? "yes" : "no");
          if (preview && previewText) {
            previewText.textContent = info.preview || "";
            preview.hidden = !info.preview || info.preview === textarea.value;
          }
        })
        .catch(function () { /* the server checks again on sending */ });
    }
    function later() {
      if (timer) { window.clearTimeout(timer); }
      timer = window.setTimeout(update, 150);
    }
    if (draftUrl && textarea.form) {
      textarea.form.addEventListener("input", later);
      textarea.form.addEventListener("change", later);
    } else {
      textarea.addEventListener("input", later);
      if (clientField) { clientField.addEventListener("input", later); }
    }
    if (textarea.value) { later(); }
  }

  // The gallery's photo picker: the photo's public link goes into the text at the cursor (the counter
  // and the preview follow, as for typing); it travels as that text.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest(".photo-insert") : null;
    if (!button) { return; }
    var textarea = byId(button.getAttribute("data-target") || "");
    if (!textarea) { return; }
    var link = button.getAttribute("data-insert") || "";
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    var before = textarea.value.slice(0, start), after = textarea.value.slice(end);
    if (before && !/\s$/.test(before)) { link = " " + link; }
    if (after && !/^\s/.test(after)) { link = link + " "; }
    textarea.value = before + link + after;
    textarea.focus();
    textarea.selectionStart = textarea.selectionEnd = before.length + link.length;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  });

  document.querySelectorAll("textarea[data-counter]").forEach(counter);
})();
