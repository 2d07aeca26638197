// The copy button of a new access token. A file of its own because the page's CSP admits no
// inline script; without script the token is still there to select and copy by hand.
"use strict";
(function () {
  const button = document.getElementById("copy-token");
  const status = document.getElementById("copy-status");
  if (!button || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener("click", async function () {
    const secret = document.getElementById(button.dataset.copies).textContent;
    try {
      await navigator.clipboard.writeText(secret);
      status.textContent = "Copied.";
    } catch (error) {
      status.textContent = "Could not copy: select the token and copy it by hand.";
    }
  });
})();
