"use strict";
// django-celery-beat's periodic task form, from a static file (the CSP refuses its inline
// script): the crontab field's help says the chosen schedule in words.
(() => {
  const data = document.getElementById("readable-crontabs");
  const select = document.getElementById("id_crontab");
  if (!data || !select) return;
  const readable = JSON.parse(data.textContent);
  const help = document.querySelector(".field-crontab .help");
  const original = help ? help.textContent : "";
  document.querySelectorAll(".field-crontab_translation").forEach((row) => {
    row.style.display = "none";
  });
  select.addEventListener("change", () => {
    if (!help) return;
    help.textContent = original;
    help.append(document.createElement("br"), `Translation: ${readable[select.value] ?? ""}`);
  });
})();
