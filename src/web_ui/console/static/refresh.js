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

// SkyPilot's localhost-callback login (`sky api login`): the token page names the port
// the CLI listens on; the token is posted there, as SkyPilot's own token page does.
(function () {
  "use strict";
  var note = document.getElementById("handover");
  var token = document.getElementById("token");
  if (!note || !token) { return; }
  var port = parseInt(note.getAttribute("data-local-port") || "", 10);
  if (!(port > 0 && port < 65536)) { return; }
  fetch("http://localhost:" + port, { method: "POST", body: token.textContent.trim() })
    .then(function (r) {
      note.textContent = r.ok
        ? "The CLI has its token: go back to your terminal; this tab can be closed."
        : "The CLI on port " + port + " answered " + r.status + ": paste the token below instead.";
    })
    .catch(function () {
      note.textContent = "The CLI on port " + port + " could not be reached: paste the token below instead.";
    });
})();
