// The referral page: copy the link or code, and the system share sheet where there is one.
// The page works without this script (the fields are selectable, the share links are links).
(function () {
  "use strict";
  var status = document.getElementById("copy-status");

  function say(text) {
    if (!status) return;
    status.textContent = "";
    // a fresh text node so screen readers announce it again on a second copy
    window.setTimeout(function () { status.textContent = text; }, 50);
  }

  function copyBySelection(input) {
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var copied = status ? status.getAttribute("data-copied") : "";
      var failed = status ? status.getAttribute("data-failed") : "";
      var fallback = function () {
        say(copyBySelection(input) ? copied : failed);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { say(copied); }, fallback);
      } else {
        fallback();
      }
    });
  });

  var share = document.getElementById("share-native");
  if (share && typeof navigator.share === "function") {
    share.parentNode.hidden = false;
    share.addEventListener("click", function () {
      navigator.share({
        title: share.getAttribute("data-title"),
        text: share.getAttribute("data-text"),
        url: share.getAttribute("data-url"),
      }).catch(function () { /* the person closed the share sheet */ });
    });
  }
})();
