/* Keepers broadcast page: refreshes the progress and results panel every 3 seconds while
   the broadcast is scheduled, sending or paused. The server formats the numbers (the same
   code renders the page), so this only copies text into the [data-kp] elements. */
(function () {
  "use strict";
  const EVERY_MS = 3000;
  const LIVE = ["scheduled", "sending", "paused"];
  const panel = document.getElementById("kp-progress");
  if (!panel || !panel.dataset.kpUrl) return;
  const status = panel.dataset.kpStatus;

  function setText(key, value) {
    document.querySelectorAll(`[data-kp="${key}"]`).forEach((node) => {
      if (node.textContent !== value) node.textContent = value;
    });
  }

  function reasons(rows) {
    const list = panel.querySelector("[data-kp-reasons]");
    if (!list) return;
    const items = rows.length ? rows.map((row) => {
      const item = document.createElement("li");
      const count = document.createElement("strong");
      count.textContent = String(row.count);
      item.append(`${row.reason}: `, count);
      return item;
    }) : [Object.assign(document.createElement("li"), {className: "kp-quiet", textContent: "Nobody skipped."})];
    list.replaceChildren(...items);
  }

  function show(data) {
    const display = data.display;
    Object.entries(display.text).forEach(([key, value]) => setText(key, value));
    const bar = panel.querySelector("[role=progressbar]");
    if (bar) {
      bar.setAttribute("aria-valuenow", String(display.percent));
      bar.firstElementChild.style.width = `${display.percent}%`;
    }
    reasons(data.skipped_reasons);
    const empty = panel.querySelector("[data-kp-empty]");
    const full = panel.querySelector("[data-kp-full]");
    empty.textContent = data.empty;
    empty.hidden = display.recipients > 0;
    full.hidden = display.recipients === 0;
    if (data.status !== status) {
      // the buttons were for the old status: hide them and offer a reload instead
      document.querySelectorAll("[data-kp-act]").forEach((node) => { node.hidden = true; });
      const note = document.querySelector("[data-kp-changed]");
      if (note) note.hidden = false;
    }
  }

  async function poll() {
    let live = true;
    try {
      const response = await fetch(panel.dataset.kpUrl, {
        credentials: "same-origin",
        headers: {Accept: "application/json"},
        cache: "no-store",
      });
      if (response.redirected) {
        live = false; // the session ended: the admin sent its login page
      } else if (response.ok) {
        const data = await response.json();
        show(data);
        live = LIVE.includes(data.status);
      } else if (response.status === 403 || response.status === 404) {
        live = false; // logged out or deleted: stop asking
      }
    } catch (error) {
      // a network blip: try again at the next turn
    }
    if (live) window.setTimeout(poll, EVERY_MS);
  }

  window.setTimeout(poll, EVERY_MS);
})();
