/* The campaign form: "Days before they can start again" shows only while re-entry is
   "Once every N days" (the only policy that reads it). */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const policy = document.getElementById("id_reentry");
    const row = document.querySelector(".form-row.field-reentry_days");
    if (!policy || !row) return;
    const follow = () => { row.hidden = policy.value !== "once_per_n_days"; };
    policy.addEventListener("change", follow);
    follow();
  });
})();
