// The dashboard's live socket: when this session ends anywhere (another tab, another device,
// a password change), the server closes it with 4401 and the page says so.
(function () {
  "use strict";
  var notice = document.getElementById("signed-out");
  if (!notice || !("WebSocket" in window)) {
    return;
  }
  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var socket = new WebSocket(scheme + "//" + window.location.host + "/ws/dashboard");
  socket.addEventListener("close", function (event) {
    if (event.code === 4401) {
      notice.hidden = false;
      document.body.classList.add("signed-out");
    }
  });
})();
