// Reloads a list page every N seconds when its <body> says data-refresh="N",
// unless the person is typing in a form.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh") || "", 10);
  if (!(secs > 0)) { return; }
  setInterval(function () {
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "SELECT")) { return; }
    window.location.reload();
  }, secs * 1000);
})();
