// The portal's pages work without this file; it only makes a sessions
// row open its session when clicked anywhere, not only on its link, and
// asks before a form marked data-confirm (removing, disabling) is sent.
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
document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});
