// srvd welcome page script. It only reports, under the text, how this page reached the
// browser: which protocol and, where the browser exposes it, how many bytes went over the
// wire against the size of the files (smaller means srvd sent them compressed). Big
// enough (over 1 KiB) that srvd compresses it too.
(function () {
  "use strict";

  function describe(entry) {
    var name = entry.name.replace(location.origin, "");
    if (!entry.encodedBodySize || !entry.decodedBodySize) {
      return name;
    }
    var ratio = entry.encodedBodySize / entry.decodedBodySize;
    var how = ratio < 0.95 ? "compressed to " + Math.round(ratio * 100) + "%" : "as is";
    return name + " " + how;
  }

  function report() {
    var status = document.getElementById("status");
    if (!status) {
      return;
    }
    var parts = [];
    if (window.performance && performance.getEntriesByType) {
      var nav = performance.getEntriesByType("navigation")[0];
      if (nav && nav.nextHopProtocol) {
        parts.push(nav.nextHopProtocol);
      }
      performance.getEntriesByType("resource").forEach(function (entry) {
        if (entry.name.indexOf(location.origin) === 0) {
          parts.push(describe(entry));
        }
      });
    }
    status.textContent = "JavaScript ran" + (parts.length ? ": " + parts.join(", ") : "");
    status.className = "ok";
  }

  if (document.readyState === "complete") {
    report();
  } else {
    window.addEventListener("load", report);
  }
})();
