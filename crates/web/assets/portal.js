// The portal's pages work without this file; it only makes a sessions
// row open its session when clicked anywhere, not only on its link.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const row of document.querySelectorAll("#sessions tbody tr[data-session]")) {
    row.style.cursor = "pointer";
    row.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      location.href = "/sessions/" + row.dataset.session;
    });
  }
});
