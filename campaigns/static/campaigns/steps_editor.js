/* Keepers campaign steps editor: edits the "steps" JSON as a list of step cards — id,
   type, settings and branches (chosen from the other steps, or "end"). Dependency-free;
   the raw JSON stays available below. Validation happens on save, server-side. */
(function () {
  "use strict";
  const BRANCHES = {wait: ["next"], wait_until: ["next"], wait_for_event: ["on_event", "on_timeout"],
    condition: ["yes", "no"], send_email: ["next"], update_contact: ["next"], webhook: ["next"], exit: []};
  const DEFAULTS = {
    wait: {hours: 1}, wait_until: {time: "10:00"}, send_email: {template: ""},
    wait_for_event: {event: "Order Completed", timeout_days: 1},
    condition: {kind: "event_since_enrollment", event: "Order Completed"},
    update_contact: {add_tags: ["tag"]}, webhook: {url: "https://"}, exit: {},
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) node.setAttribute(k, v);
    });
    children.flat().forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(c)));
    return node;
  }

  function field(label, control) {
    const id = "se-" + Math.random().toString(36).slice(2);
    control.id = id;
    return el("span", {class: "se-field"}, el("label", {for: id}, label), control);
  }

  function select(options, value, onchange) {
    const node = el("select", {onchange: (e) => onchange(e.target.value)});
    options.forEach(([v, label]) => {
      const option = el("option", {value: v}, label);
      if (v === value) option.selected = true;
      node.append(option);
    });
    return node;
  }

  function mount(textarea) {
    const host = el("div", {class: "se", "aria-label": "Steps editor"});
    textarea.parentNode.insertBefore(host, textarea);
    let drawn = null;  // the JSON the cards show, so a blur without an edit does not redraw
    const save = (steps) => { textarea.value = JSON.stringify(steps, null, 2); draw(); };
    function draw() {
      drawn = textarea.value;
      host.replaceChildren();
      let steps;
      try { steps = JSON.parse(textarea.value || "[]"); } catch (e) {
        host.append(el("p", {class: "errornote"}, "The JSON below is not valid; fix it to use the editor."));
        return;
      }
      if (!Array.isArray(steps)) steps = [];
      const ids = steps.map((s) => s.id);
      steps.forEach((step, index) => {
        const update = (patch) => { steps[index] = {...step, ...patch}; save(steps); };
        const card = el("fieldset", {class: "se-step"}, el("legend", {}, `${index + 1}. ${step.id || "?"}`));
        card.append(field("Id", el("input", {value: step.id || "", size: 14,
          onchange: (e) => update({id: e.target.value.trim()})})));
        card.append(field("Type", select(Object.keys(BRANCHES).map((t) => [t, t]), step.type, (t) => {
          const fresh = {id: step.id, type: t, config: structuredClone(DEFAULTS[t])};
          BRANCHES[t].forEach((b) => { fresh[b] = step.next ?? null; });
          steps[index] = fresh; save(steps);
        })));
        const config = el("textarea", {rows: 2, cols: 48, spellcheck: "false"}, JSON.stringify(step.config || {}));
        config.addEventListener("change", (e) => {
          try { update({config: JSON.parse(e.target.value)}); config.setCustomValidity(""); }
          catch (err) { config.setCustomValidity("Not valid JSON"); config.reportValidity(); }
        });
        card.append(field("Settings", config));
        (BRANCHES[step.type] || []).forEach((branch) => {
          const choices = [["", "end"], ...ids.filter((i) => i !== step.id).map((i) => [i, "→ " + i])];
          card.append(field(branch, select(choices, step[branch] || "", (v) => update({[branch]: v || null}))));
        });
        const tools = el("span", {class: "se-tools"},
          el("button", {type: "button", "aria-label": "Move up", onclick: () => {
            if (index > 0) { [steps[index - 1], steps[index]] = [steps[index], steps[index - 1]]; save(steps); }
          }}, "↑"),
          el("button", {type: "button", "aria-label": "Remove step", onclick: () => {
            steps.splice(index, 1); save(steps);
          }}, "✕"));
        card.append(tools);
        host.append(card);
      });
      host.append(el("button", {type: "button", class: "button", onclick: () => {
        let n = steps.length + 1;
        while (ids.includes("step-" + n)) n += 1;
        const last = steps[steps.length - 1];
        const id = "step-" + n;
        if (last && BRANCHES[last.type].includes("next") && !last.next) last.next = id;
        steps.push({id, type: "wait", config: {hours: 1}, next: null});
        save(steps);
      }}, "+ Add a step"));
    }
    textarea.addEventListener("change", () => { if (textarea.value !== drawn) draw(); });
    draw();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const textarea = document.getElementById("id_steps");
    if (textarea) mount(textarea);
  });
})();
