// eChat panel: small progressive enhancements. No inline script anywhere (CSP script-src 'self').
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // fetch() that carries the CSRF token, for plugins that update pages without a reload.
  window.echat = {
    csrfToken: csrfToken,
    fetch: function (url, options) {
      options = options || {};
      options.headers = new Headers(options.headers || {});
      options.headers.set("X-CSRF-Token", csrfToken());
      options.credentials = "same-origin";
      return window.fetch(url, options);
    },
    // A count as the pages write it (panel/templating.py's ``number``): the digits of a whole number
    // grouped by three with the reader's separator, 12,345 in English and 12.345 in Spanish; anything
    // else as it is.
    number: function (value) {
      var text = String(value);
      if (!/^-?\d+$/.test(text)) { return text; }
      var group = document.documentElement.getAttribute("data-group") || "";
      return text.replace(/\B(?=(\d{3})+(?!\d))/g, group);
    }
  };

  document.documentElement.classList.add("js");

  // Narrow screens: the top bar keeps the brand and a menu button; the button shows the menu and the
  // account's links (panel.css hides them below 800 px while the page is not "menu-open").
  document.addEventListener("click", function (event) {
    var toggle = event.target instanceof Element ? event.target.closest("[data-menu-toggle]") : null;
    if (!toggle) { return; }
    var open = document.documentElement.classList.toggle("menu-open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.submit();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // One click, one submission: the button stays disabled until the next page arrives.
    var buttons = form.querySelectorAll("button[type=submit]");
    window.setTimeout(function () {
      buttons.forEach(function (button) { button.disabled = true; });
    }, 0);
  });
})();
