/* Mailweb: keyboard shortcuts, message frames, presence state and small enhancements.
   Plain JavaScript, no build step; htmx (vendored) does the partial page updates. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  /* Label colours come from data attributes: the page CSP forbids inline style attributes. */
  function paintLabels(root) {
    $all("[data-color]", root).forEach(function (el) {
      var color = el.getAttribute("data-color");
      if (/^#[0-9a-fA-F]{6}$/.test(color)) { el.style.backgroundColor = color; }
    });
  }

  /* Message frames: grow to fit their content (same-origin sandbox, no scripts inside). */
  function fitFrame(frame) {
    try {
      var doc = frame.contentDocument;
      if (!doc || !doc.documentElement) { return; }
      frame.style.height = Math.max(60, doc.documentElement.scrollHeight + 4) + "px";
    } catch (e) { /* not ready or not same-origin */ }
  }
  function wireFrames(root) {
    $all("iframe.message-frame", root).forEach(function (frame) {
      if (frame.dataset.wired) { return; }
      frame.dataset.wired = "1";
      frame.addEventListener("load", function () {
        fitFrame(frame);
        setTimeout(function () { fitFrame(frame); }, 300);
      });
      fitFrame(frame);
    });
  }
  document.addEventListener("toggle", function (event) {
    if (event.target.matches && event.target.matches("details.message") && event.target.open) {
      $all("iframe.message-frame", event.target).forEach(fitFrame);
    }
  }, true);

  /* "Show images": reload that one frame through the image proxy. */
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-show-images]");
    if (!button) { return; }
    var id = button.getAttribute("data-show-images");
    var frame = document.getElementById("frame-" + id);
    if (!frame) { return; }
    event.preventDefault();
    frame.src = frame.src.split("?")[0] + "?images=1";
    var bar = document.querySelector('[data-images-bar="' + id + '"]');
    if (bar) { bar.remove(); }
  });

  /* Snooze forms carry the browser's time zone offset. */
  function fillTimezone(root) {
    $all("[data-tz-offset]", root).forEach(function (input) {
      input.value = String(new Date().getTimezoneOffset());
    });
  }

  /* Selects that filter the list submit themselves. */
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("[data-autosubmit]")) { event.target.form.submit(); }
  });

  /* Presence: "replying" while a composer is open, else "viewing". */
  function updatePresenceState() {
    var state = $("#presence-state");
    if (state) { state.value = $("#composer form") ? "replying" : "viewing"; }
  }

  function setCurrentRow(id) {
    $all(".conv-row").forEach(function (row) {
      row.classList.toggle("is-current", row.getAttribute("data-conversation") === id);
    });
  }

  function enhance(root) {
    paintLabels(root);
    wireFrames(root);
    fillTimezone(root);
    updatePresenceState();
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    enhance(event.target);
    var pane = $("#reading-pane");
    if (pane && pane.getAttribute("data-conversation")) {
      document.body.classList.add("has-conversation");
      setCurrentRow(pane.getAttribute("data-conversation"));
      var row = $(".conv-row.is-current");
      if (row) { row.classList.remove("unread"); var dot = $(".unread-dot", row); if (dot) { dot.remove(); } }
    }
    if (event.target.id === "composer") {
      var field = $("#composer textarea[autofocus], #composer input[autofocus]");
      if (field) { field.focus(); if (field.setSelectionRange) { field.setSelectionRange(0, 0); } field.scrollTop = 0; }
    }
  });

  /* Keyboard shortcuts (ignored while typing). */
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }
  function rows() { return $all(".conv-row"); }
  function selectedIndex(list) {
    for (var i = 0; i < list.length; i++) {
      if (list[i].classList.contains("is-selected")) { return i; }
    }
    for (var j = 0; j < list.length; j++) {
      if (list[j].classList.contains("is-current")) { return j; }
    }
    return -1;
  }
  function move(step) {
    var list = rows();
    if (!list.length) { return; }
    var index = selectedIndex(list);
    var next = Math.min(list.length - 1, Math.max(0, index < 0 ? 0 : index + step));
    list.forEach(function (row) { row.classList.remove("is-selected"); });
    list[next].classList.add("is-selected");
    var link = $(".conv-link", list[next]);
    link.focus({ preventScroll: true });
    list[next].scrollIntoView({ block: "nearest" });
  }
  function openSelected() {
    var list = rows();
    var index = selectedIndex(list);
    if (index >= 0) { $(".conv-link", list[index]).click(); }
  }
  function submit(selector) {
    var form = $(selector);
    if (!form) { return; }
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }
  function showHelp() {
    var dialog = $("#shortcuts");
    if (dialog && !dialog.open) { dialog.showModal(); }
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-shortcuts]")) { showHelp(); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    if ($("dialog[open]")) { return; }
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o": openSelected(); break;
      case "Enter":
        if (event.target.closest && event.target.closest(".conv-row")) { return; } /* the link handles it */
        openSelected(); break;
      case "r": var reply = $("#reply-button"); if (reply) { reply.click(); } break;
      case "a": submit("#assign-me-form"); break;
      case "e": submit("#close-form"); break;
      case "/": var search = $("#search-input"); if (search) { search.focus(); search.select(); } break;
      case "?": showHelp(); break;
      default: return;
    }
    event.preventDefault();
  });

  /* Leaving a conversation: tell the others at once instead of waiting for the entry to expire. */
  window.addEventListener("pagehide", function () {
    var pane = $("#reading-pane[data-conversation]");
    var token = $("input[name=csrfmiddlewaretoken]");
    if (!pane || !token || !navigator.sendBeacon) { return; }
    var data = new FormData();
    data.append("state", "left");
    data.append("csrfmiddlewaretoken", token.value);
    navigator.sendBeacon("/c/" + pane.getAttribute("data-conversation") + "/presence", data);
  });
})();
