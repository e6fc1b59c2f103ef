/* Keepers journey builder: draws a campaign's steps (the "steps" field) as a graph of nodes
   and edges and edits it. Everything about a step type comes from the kinds document the
   server embeds (crm/kinds.py, json_script "kp-kinds"): its label, group, fields and
   branches, so a step type added on the server appears here with no change to this file.
   The server's validation (the same the save runs) answers each change; its error path
   ("steps[2].config.hours") is shown on the node and the field it names. Plain DOM and SVG:
   the layout is a tidy tree over the steps (a journey is mostly a tree; a branch back to
   an earlier step is drawn as a curve), which needs no graph-layout library. */
(function () {
  "use strict";
  const COL = 212, ROW = 106, NODE_W = 190, NODE_H = 74, PAD = 20;
  const FIGURES = ["waiting", "passed", "sent", "opened", "clicked", "converted"];
  const UNITS = [["minutes", "minutes"], ["hours", "hours"], ["days", "days"]];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else if (v === true) node.setAttribute(k, "");
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    });
    children.flat().forEach((c) => c !== null && c !== undefined && node.append(c instanceof Node ? c : document.createTextNode(c)));
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }
  const clone = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));
  const empty = (v) => v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length) ||
    (typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length);
  let uid = 0;
  const freshId = () => "kpj-" + (++uid);

  function mount(textarea, kinds, data) {
    // The page's words in the staff's language (the server's gettext: data.strings).
    const say = (text, vars) => (data.strings && data.strings[text] || text).replace(/\{(\w+)\}/g, (m, k) => (vars && k in vars ? vars[k] : m));
    const STEP = Object.fromEntries(kinds.step.map((k) => [k.name, k]));
    const COND = Object.fromEntries((kinds.condition || []).map((k) => [k.name, k]));
    const RULE = Object.fromEntries((kinds.segment_condition || []).map((k) => [k.name, k]));
    const SOURCES = kinds.sources || {};
    const form = textarea.form;
    let opener = null, steps = [], selected = null, problem = null, counts = data.counts || {}, timer = null;
    let base = "", claimed = false;  // the panel's step in error paths; an error shown on a rule row

    // --- the page: builder above, the JSON as an "advanced" view below -------------------
    const row = textarea.closest(".form-row") || textarea.parentNode;
    const host = el("div", {class: "kpj", id: "kp-journey"});
    const legend = el("p", {class: "kpj-legend"});
    const goals = el("p", {class: "kpj-goals"});
    const banner = el("p", {class: "errornote kpj-banner", role: "alert", hidden: true});
    const canvas = el("div", {class: "kpj-canvas", role: "group", "aria-label": say("Journey")});
    const panel = el("aside", {class: "kpj-panel", "aria-label": say("Step settings"), hidden: true});
    const palette = el("div", {class: "kpj-palette", role: "dialog", "aria-label": say("Add a step"), hidden: true});
    const advanced = el("details", {class: "kpj-advanced"}, el("summary", {}, say("Advanced: the steps as JSON")));
    row.parentNode.insertBefore(host, row);
    host.append(banner, goals, legend, el("div", {class: "kpj-body"}, canvas, panel), palette, advanced);
    advanced.append(row);

    function read() {
      try {
        const parsed = JSON.parse(textarea.value || "[]");
        steps = Array.isArray(parsed) ? parsed : [];
        return true;
      } catch (e) {
        return false;
      }
    }
    function write(structural) {
      steps.forEach((step) => { if (STEP[step.type] && step.config) prune(STEP[step.type], step.config); });
      textarea.value = JSON.stringify(steps, null, 2);
      draw();
      if (structural) showPanel(true);
      validateSoon();
    }
    const byId = () => Object.fromEntries(steps.map((s) => [s.id, s]));
    const stepName = (step) => step.name || step.id;

    // --- what a step is, read from its description --------------------------------------
    function shown(field, values) {
      return Object.entries(field.when || {}).every(([key, allowed]) => allowed.includes(values[key]));
    }
    // A field hidden by its `when` is dropped from the config (crm/kinds.py), as the other
    // editors do: a grant switched from a coupon to credit keeps no coupon_type. A key no
    // field describes (typed in the advanced JSON) is left alone; so is a flat kind's.
    function prune(kind, config) {
      if (kind.extra && kind.extra.flat) return;
      const keep = new Set(), hidden = new Set();
      kind.fields.forEach((f) => {
        const keys = f.type === "duration" ? ["minutes", "hours", "days"].map((u) => (f.prefix || "") + u) : [f.name];
        keys.forEach((key) => (shown(f, config) ? keep : hidden).add(key));
      });
      hidden.forEach((key) => { if (!keep.has(key)) delete config[key]; });
    }
    function defaults(fields, into, flat) {
      fields.forEach((f) => {
        if (!shown(f, into)) return;
        let value = clone(f.default);
        if (value === undefined && f.required && (f.type === "ref") && (SOURCES[f.source] || []).length) value = SOURCES[f.source][0][0];
        if (value === undefined) return;
        if (f.type === "duration") Object.entries(value).forEach(([unit, n]) => { into[(f.prefix || "") + unit] = n; });
        else if (flat === f.name) Object.assign(into, value);
        else into[f.name] = value;
      });
      return into;
    }
    function newConfig(kind) {
      if (kind.extra && kind.extra.example) return clone(kind.extra.example);
      return defaults(kind.fields, {}, kind.extra && kind.extra.flat);
    }
    // Where a step can go: its own branches, then branch fields in its config (a split's
    // otherwise) and in list items (each path's next).
    function targets(step) {
      const kind = STEP[step.type];
      if (!kind) return [];
      const out = [];
      const slot = (obj, key, label) => ({label, get: () => obj[key] || null,
        set: (v) => { if (v) obj[key] = v; else if (obj === step) obj[key] = null; else delete obj[key]; }});
      (kind.branches || []).forEach(([key, label]) => out.push(slot(step, key, label)));
      const config = step.config || (step.config = {});
      kind.fields.forEach((f) => {
        if (f.type === "branch") out.push(slot(config, f.name, f.label));
        if (f.type === "list") (config[f.name] || []).forEach((item, n) => f.fields.filter((g) => g.type === "branch")
          .forEach((g) => out.push(slot(item, g.name, item.name || `${f.label} ${n + 1}`))));
      });
      return out;
    }
    function optionLabel(source, value) {
      const found = (SOURCES[source] || []).find(([v]) => String(v) === String(value));
      return found ? found[1] : String(value);
    }
    function durationText(config, prefix) {
      const unit = UNITS.find(([u]) => (prefix || "") + u in config);
      if (!unit) return "";
      const n = config[(prefix || "") + unit[0]];
      return `${n} ${n === 1 ? unit[0].replace(/s$/, "") : unit[0]}`;
    }
    // --- a condition in words, from its kind's description (labels, choices, options) ---
    // "Loyalty tier is Gold", "Stage is one of Repeat, Loyal", "Event Order Completed at
    // least 1 times in the last 30 days": the kind's label (or the subject a first choice
    // names, "Stage"), then each shown field's value, a choice or an option by its label;
    // a "…" in a label takes the number that follows. Japanese labels that start with a
    // particle ("が次と等しい") join the word before them without a space.
    const labelOf = (choices, v) => { const c = (choices || []).find(([x]) => String(x) === String(v)); return c ? c[1] : String(v); };
    const NUMBERS = ["integer", "number", "money"];
    function join(words) {
      return words.reduce((out, w) => (!out ? w : /^[がをでのにはとより]/.test(w) ? out + w : `${out} ${w}`), "").replace(/\s+/g, " ").trim();
    }
    function phrase(kind, node) {
      const value = (key) => {
        if (key in node) return node[key];
        const f = kind.fields.find((x) => x.name === key && x.default !== undefined);
        return f ? f.default : undefined;
      };
      const fields = kind.fields.filter((f) => Object.entries(f.when || {}).every(([k, allowed]) => allowed.some((a) => String(a) === String(value(k)))));
      const words = [];
      let open = -1;  // the word whose "…" waits for the next number
      fields.forEach((f) => {
        const v = value(f.name);
        if (empty(v) || f.type === "branch") return;
        let word;
        if (NUMBERS.includes(f.type) && open >= 0) { words[open] = words[open].replace("…", v); open = -1; return; }
        if (f.type === "choice") word = labelOf(f.choices, v);
        else if (f.type === "choices") word = [].concat(v).map((x) => labelOf(f.choices, x)).join(", ");
        else if (f.type === "ref" || f.type === "refs") word = [].concat(v).map((x) => optionLabel(f.source, x)).join(", ");
        else if (f.type === "boolean") word = v ? f.label : "";
        else if (f.type === "rule") word = ruleText(v);
        else if (f.type === "duration") word = durationText(node, f.prefix);
        else if (f.type === "properties") word = Object.entries(v).map(([k, x]) => `${k} = ${x}`).join(", ");
        else if (NUMBERS.includes(f.type) && f.label.includes("…")) {
          word = f.label.replace(/\s*[(（].*[)）]\s*$/, "").replace("…", v);
          word = word.charAt(0).toLowerCase() + word.slice(1);  // mid-sentence
        } else word = Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : String(v);
        if (!word) return;
        words.push(word);
        if (f.type === "choice" && word.includes("…")) open = words.length - 1;
      });
      if (open >= 0) words[open] = words[open].replace(/\s*…\s*/, " ").trim();
      const first = fields[0];
      const subject = first && first.type === "choice" && first.name !== "op" && (first.choices || []).length > 2 && words.length > 1;
      const text = join(subject ? words : [kind.label, ...words]);
      return text.charAt(0).toUpperCase() + text.slice(1);
    }
    // A segment rule in words: a group of one is its condition; "all of 2 conditions: …".
    function ruleText(rule) {
      if (!rule || typeof rule !== "object") return "";
      if ("not" in rule) return say("not: {rule}", {rule: ruleText(rule.not)});
      const mode = ["all", "any"].find((m) => Array.isArray(rule[m]));
      if (mode) {
        const parts = rule[mode].map(ruleText);
        if (parts.length === 1) return parts[0];
        return say(mode === "all" ? "all of {n} conditions: {list}" : "any of {n} conditions: {list}", {n: parts.length, list: parts.join("; ")});
      }
      const kind = RULE[rule.type];
      return kind ? phrase(kind, rule) : String(rule.type || "?");
    }
    // A condition step's condition in words: a kind that only holds a rule is its rule.
    function conditionText(c) {
      if (!c || !c.kind) return "";
      const kind = COND[c.kind];
      if (!kind) return c.kind;
      const rules = kind.fields.filter((f) => f.type === "rule");
      if (rules.length && rules.length === kind.fields.length) return ruleText(c[rules[0].name]);
      return phrase(kind, c);
    }
    function valueText(f, config) {
      const v = config[f.name];
      if (f.type === "duration") return durationText(config, f.prefix);
      if (f.type === "condition") return conditionText(f.name && config[f.name] && typeof config[f.name] === "object" ? config[f.name] : config);
      if (f.type === "rule") return ruleText(v);
      if (empty(v) || f.type === "branch") return "";
      if (f.type === "ref" || f.type === "refs") return [].concat(v).map((x) => optionLabel(f.source, x)).join(", ");
      if (f.type === "choice") { const c = f.choices.find(([x]) => String(x) === String(v)); return c ? c[1] : String(v); }
      if (f.type === "choices") return [].concat(v).map((x) => { const c = f.choices.find(([y]) => y === x); return c ? c[1] : x; }).join(", ");
      if (f.type === "list") return v.map((item, n) => item.name || n + 1).join(" / ");
      if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}=${x}`).join(", ");
      return `${f.label}: ${v}`;
    }
    function summary(step) {
      const kind = STEP[step.type];
      if (!kind) return "";
      const config = step.config || {};
      return kind.fields.filter((f) => shown(f, config)).map((f) => valueText(f, config)).filter(Boolean).slice(0, 2).join(" · ");
    }

    // --- validation: the server's, on every change --------------------------------------
    function problemAt() {
      if (!problem) return null;
      const m = /^steps\[(\d+)\](?:\.config\.([A-Za-z0-9_]+))?/.exec(problem.path);
      if (!m) return {step: null};
      const step = steps[Number(m[1])];
      if (!step) return {step: null};
      let field = null;
      const kind = STEP[step.type];
      if (m[2] && kind) {
        const f = kind.fields.find((x) => x.name === m[2] || (x.type === "duration" && UNITS.some(([u]) => (x.prefix || "") + u === m[2])));
        field = f ? f.name : (kind.extra && kind.extra.flat) || null;
      } else if (!m[2] && kind && /\.config$/.test(problem.path) && kind.fields.length) {
        field = kind.fields[0].name;
      }
      return {step: step.id, field};
    }
    function validateSoon() {
      clearTimeout(timer);
      timer = setTimeout(validate, 300);
    }
    function validate() {
      if (!steps.length) { problem = null; host.dataset.state = "empty"; draw(); return; }
      const token = form.querySelector("[name=csrfmiddlewaretoken]");
      fetch(data.validate_url, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": token ? token.value : ""},
        body: JSON.stringify({steps})})
        .then((r) => r.json())
        .then((answer) => {
          const before = JSON.stringify(problem);
          problem = answer.ok ? null : answer;
          host.dataset.state = answer.ok ? "valid" : "invalid";
          draw();
          if (JSON.stringify(problem) !== before) showPanel(true);
        })
        .catch(() => {});
    }

    // --- the graph ---------------------------------------------------------------------
    function layout() {
      const index = byId(), pos = {}, ends = [];
      let col = 0;
      function place(id, depth) {
        pos[id] = {depth, col: null};
        const cols = [];
        targets(index[id]).forEach((t, n) => {
          const to = t.get();
          if (to && index[to] && !(to in pos)) cols.push(place(to, depth + 1));
          else if (!to || !index[to]) { const c = col++; ends.push({from: id, n, col: c, depth: depth + 1}); cols.push(c); }
        });
        pos[id].col = cols.length ? (cols[0] + cols[cols.length - 1]) / 2 : col++;
        return pos[id].col;
      }
      steps.forEach((s) => { if (!(s.id in pos)) place(s.id, 1); });
      return {pos, ends, width: Math.max(col, 1)};
    }
    const xy = (p) => ({x: PAD + p.col * COL, y: PAD + p.depth * ROW});

    function addButton(label, onchoose, at) {
      const b = el("button", {type: "button", class: "kpj-add", "aria-label": label, title: label, text: "+",
        onclick: (e) => { e.stopPropagation(); openPalette(b, onchoose); }});
      b.style.left = `${at.x - 12}px`;
      b.style.top = `${at.y - 12}px`;
      return b;
    }

    function draw() {
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.step : null;
      const {pos, ends, width} = layout();
      const index = byId();
      const at = problemAt();
      const depth = Math.max(1, ...Object.values(pos).map((p) => p.depth), ...ends.map((e) => e.depth));
      const w = PAD * 2 + width * COL, h = PAD * 2 + depth * ROW + NODE_H;
      const lines = svg("svg", {class: "kpj-edges", width: w, height: h, "aria-hidden": "true"});
      const layer = el("div", {class: "kpj-layer"});
      layer.style.width = `${w}px`;
      layer.style.height = `${h}px`;
      const centre = ((width - 1) / 2);
      const trigger = {x: PAD + centre * COL + NODE_W / 2, y: PAD};
      const edge = (from, to, label, insert) => {
        const mid = (from.y + to.y) / 2;
        lines.append(svg("path", {d: `M${from.x},${from.y} C${from.x},${mid} ${to.x},${mid} ${to.x},${to.y}`, class: "kpj-edge"}));
        if (label) {
          const tag = el("span", {class: "kpj-branch", text: label, title: label});
          tag.style.left = `${(from.x + to.x) / 2 + 14}px`;
          tag.style.top = `${mid - 10}px`;
          layer.append(tag);
        }
        if (insert) layer.append(addButton(insert.label, insert.choose, {x: (from.x + to.x) / 2, y: mid}));
      };
      // the trigger, then each step
      const triggerNode = el("div", {class: "kpj-node kpj-trigger"},
        el("span", {class: "kpj-kind", text: say("Trigger")}), el("span", {class: "kpj-title", text: triggerText(), title: triggerText()}));
      place(triggerNode, {x: trigger.x - NODE_W / 2, y: trigger.y});
      layer.append(triggerNode);
      if (steps.length) {
        const first = xy(pos[steps[0].id]);
        edge({x: trigger.x, y: trigger.y + 44}, {x: first.x + NODE_W / 2, y: first.y}, "",
          {label: say("Add a step at the start"), choose: (kind) => insertFirst(kind)});
      } else {
        layer.append(el("div", {class: "kpj-empty"}, el("p", {}, say("Start with a step: a wait, an email, a condition… The trigger enrols contacts; each step then runs in turn along the arrows.")),
          el("button", {type: "button", class: "button", text: say("Add the first step"), onclick: (e) => openPalette(e.currentTarget, insertFirst)})));
      }
      steps.forEach((step) => {
        const p = pos[step.id];
        const {x, y} = xy(p);
        const out = {x: x + NODE_W / 2, y: y + NODE_H};
        targets(step).forEach((t, n) => {
          const to = t.get();
          const choose = (kind) => insertOn(t, kind);
          const label = say("Add a step on “{branch}” after {step}", {branch: t.label, step: stepName(step)});
          if (to && index[to]) {
            const tp = xy(pos[to]);
            edge(out, {x: tp.x + NODE_W / 2, y: tp.y}, targets(step).length > 1 ? t.label : "", {label, choose});
          } else {
            const end = ends.find((e) => e.from === step.id && e.n === n);
            const ep = xy(end);
            const endAt = {x: ep.x + NODE_W / 2, y: ep.y - ROW / 2 + 24};
            edge(out, endAt, targets(step).length > 1 ? t.label : "", null);
            layer.append(addButton(label, choose, endAt));
            const stop = el("span", {class: "kpj-end", text: say("end")});
            stop.style.left = `${endAt.x - 16}px`;
            stop.style.top = `${endAt.y + 14}px`;
            layer.append(stop);
          }
        });
        layer.append(node(step, {x, y}, at));
      });
      layer.prepend(lines);
      canvas.replaceChildren(layer);
      banner.hidden = !(problem && at && !at.step);
      banner.textContent = banner.hidden ? "" : `${problem.path}: ${problem.message}`;
      goals.replaceChildren(...goalsLine());
      legend.textContent = data.version ? say("Counts on each node: treatment / held out (all versions; version {version} is live).", {version: data.version}) :
        say("Not published yet: counts appear once it runs.");
      if (focused) { const again = canvas.querySelector(`[data-step="${CSS.escape(focused)}"]`); if (again) again.focus(); }
    }
    function place(node, p) { node.style.left = `${p.x}px`; node.style.top = `${p.y}px`; }

    function triggerText() {
      const field = form.elements.trigger;
      try {
        const t = JSON.parse(field ? field.value : "{}");
        return [t.type, t.name || t.segment || t.field || t.event || ""].filter(Boolean).join(": ") || "not set";
      } catch (e) { return "not set"; }
    }
    // The campaign's goals and exits end an enrolment from any step: drawn beside the graph.
    function goalsLine() {
      const list = (name) => { try { return [].concat(JSON.parse((form.elements[name] || {}).value || "[]") || []); } catch (e) { return []; } };
      const pills = [
        ...list("goals").map((g) => el("span", {class: "kpj-pill kpj-goal", text: say(g.match ? "Goal: {event} (same {match}) → exits, converted" : "Goal: {event} → exits, converted", g)})),
        ...list("exits").map((x) => el("span", {class: "kpj-pill kpj-exit", text: say("Exit: {what}", {what: [x.type, x.segment || x.to || x.from || ""].filter(Boolean).join(" ")})})),
      ];
      return pills.length ? pills : [el("span", {class: "kpj-pill", text: say("No goals or exits: enrolments run to the end.")})];
    }

    function node(step, p, at) {
      const kind = STEP[step.type] || {label: step.type || "?", fields: []};
      const text = summary(step);
      const wrong = at && at.step === step.id;
      const figures = counts[step.id];
      const n = el("div", {class: `kpj-node${selected === step.id ? " kpj-selected" : ""}${wrong ? " kpj-invalid" : ""}`,
        tabindex: "0", role: "button", "data-step": step.id, "data-type": step.type,
        "aria-label": `${kind.label}: ${stepName(step)}${text ? ", " + text : ""}. ${say("Enter to edit, Delete to remove.")}`,
        onclick: () => openStep(step.id),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openStep(step.id); }
          if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); remove(step.id); }
        }},
      el("span", {class: "kpj-kind", text: kind.label}),
      el("span", {class: "kpj-title", text: stepName(step), title: stepName(step)}),
      text ? el("span", {class: "kpj-summary", text, title: text}) : null,
      el("span", {class: "kpj-counts"}, countsOf(figures)),
      wrong ? el("span", {class: "kpj-error", role: "alert", text: problem.message, title: problem.message}) : null);
      place(n, p);
      return n;
    }
    function countsOf(figures) {
      if (!figures) return [];
      return FIGURES.filter((f) => figures.treatment[f] || figures.holdout[f]).map((f) =>
        el("span", {"data-figure": f, title: say("{figure}: {treatment} treatment, {holdout} held out", {figure: say(f), treatment: figures.treatment[f], holdout: figures.holdout[f]}),
          text: `${say(f)} ${figures.treatment[f]}${figures.holdout[f] ? " / " + figures.holdout[f] : ""}`}));
    }

    // --- adding, removing -------------------------------------------------------------
    function openPalette(anchor, onchoose) {
      opener = anchor;
      const groups = {};
      kinds.step.forEach((k) => { const group = k.group || say("Other"); (groups[group] = groups[group] || []).push(k); });
      palette.replaceChildren(el("p", {class: "kpj-palette-title", text: say("Add a step")}),
        ...Object.entries(groups).map(([group, list]) => el("div", {class: "kpj-group"}, el("h3", {text: group}),
          list.map((k) => el("button", {type: "button", class: "kpj-choice", "data-kind": k.name, title: k.help || "",
            onclick: () => { closePalette(); onchoose(k.name); }}, el("strong", {text: k.label}), k.help ? el("small", {text: k.help}) : null)))),
        el("button", {type: "button", class: "button", text: say("Cancel"), onclick: () => closePalette(anchor)}));
      palette.hidden = false;
      palette.onkeydown = (e) => { if (e.key === "Escape") closePalette(anchor); };
      const first = palette.querySelector(".kpj-choice");
      if (first) first.focus();
    }
    function closePalette(back) { palette.hidden = true; if (back) back.focus(); }

    function newStep(kindName) {
      const kind = STEP[kindName];
      const taken = new Set(steps.map((s) => s.id));
      let n = 1;
      while (taken.has(`${kindName}-${n}`)) n += 1;
      return {id: `${kindName}-${n}`, type: kindName, config: newConfig(kind)};
    }
    function insertOn(target, kindName) {
      const step = newStep(kindName);
      const after = target.get();
      target.set(step.id);
      const out = targets(step);
      if (out.length) out[0].set(after);
      steps.push(step);
      selected = step.id;
      write(true);
    }
    function insertFirst(kindName) {
      const step = newStep(kindName);
      const out = targets(step);
      if (out.length && steps.length) out[0].set(steps[0].id);
      steps.unshift(step);
      selected = step.id;
      write(true);
    }
    function remove(id) {
      const step = steps.find((s) => s.id === id);
      if (!step || !window.confirm(say("Delete the step “{step}”? Arrows into it go on to where it went.", {step: stepName(step)}))) return;
      const out = targets(step).map((t) => t.get()).filter(Boolean);
      const onward = out.length === 1 ? out[0] : null;
      const wasFirst = steps[0] === step;
      steps = steps.filter((s) => s !== step);
      steps.forEach((s) => targets(s).forEach((t) => { if (t.get() === id) t.set(onward); }));
      if (wasFirst && onward) { const next = steps.find((s) => s.id === onward); steps = [next, ...steps.filter((s) => s !== next)]; }
      if (selected === id) selected = null;
      write(true);
      const firstNode = canvas.querySelector(".kpj-node[data-step]");
      if (firstNode) firstNode.focus();
    }
    function openStep(id) {
      selected = id;
      draw();
      showPanel();
      const first = panel.querySelector("input, select, textarea");
      if (first) first.focus();
    }

    // --- the side panel, generated from the step's description ---------------------------
    function showPanel(keepFocus) {
      const step = steps.find((s) => s.id === selected);
      if (!step) { panel.hidden = true; return; }
      const active = keepFocus && panel.contains(document.activeElement) ? document.activeElement : null;
      // the control to focus again: by its key, or (inside a rule builder) by its node's path
      const focusAt = !active ? null : active.dataset.key ? `[data-key="${CSS.escape(active.dataset.key)}"]`
        : active.dataset.path ? `${active.tagName.toLowerCase()}[data-path="${CSS.escape(active.dataset.path)}"]` : null;
      let caret = null;
      try { caret = active ? [active.selectionStart, active.selectionEnd] : null; } catch (e) { caret = null; }
      const kind = STEP[step.type];
      const at = problemAt();
      const bad = at && at.step === step.id ? at.field || "" : null;
      panel.hidden = false;
      // where this step's config is in the server's error paths; a rule control that shows
      // the error on its row claims it, so its field does not repeat it
      base = `steps[${steps.indexOf(step)}].config`;
      claimed = false;
      const config = step.config || (step.config = {});
      const changed = (structural) => write(structural);
      const parts = [el("h3", {class: "kpj-panel-title", text: kind ? kind.label : step.type}),
        kind && kind.help ? el("p", {class: "help", text: kind.help}) : null,
        bad !== null ? el("p", {class: "errornote", role: "alert", text: problem.message}) : null,
        control({name: "name", type: "text", label: say("Name"), help: say("Shown on the node (id {id}).", {id: step.id})}, step, changed, false, "name")];
      if (kind) {
        kind.fields.forEach((f) => {
          if (!shown(f, config)) return;
          const holder = kind.extra && kind.extra.flat === f.name ? null : config;
          parts.push(control(f, holder, changed, bad === f.name, f.name, step, holder === null ? "" : `.${f.name}`));
        });
        (kind.branches || []).forEach(([key, label]) => parts.push(control({name: key, type: "branch", label}, step, changed, false, key, step)));
      } else {
        parts.push(el("p", {class: "errornote", text: say("No description for the step type “{type}”: edit it in the JSON below.", {type: step.type})}));
      }
      parts.push(el("p", {class: "kpj-panel-tools"},
        el("button", {type: "button", class: "button", text: say("Done"), onclick: () => { selected = null; panel.hidden = true; draw(); }}),
        el("button", {type: "button", class: "button kpj-delete", text: say("Delete step"), onclick: () => remove(step.id)})));
      panel.replaceChildren(...parts.filter(Boolean));
      if (focusAt) {
        const again = panel.querySelector(focusAt);
        if (again) {
          again.focus();
          try { if (caret && caret[0] !== null) again.setSelectionRange(caret[0], caret[1]); } catch (e) { /* not a text input */ }
        }
      }
    }

    // One control for one field of `obj` (null: the step's config itself, a flat
    // condition). `changed(true)` redraws the panel (a choice can show other fields). `at`
    // is where the value sits under the step's config in the server's paths (".rule",
    // ".paths[0].condition.rule"; "" for a flat condition).
    function control(f, obj, changed, wrong, key, step, at) {
      const id = freshId();
      const config = step ? step.config : {};
      const target = obj === null ? config : obj;
      const set = (v, structural) => {
        if (empty(v) && !(f.type === "branch" && target === step)) delete target[f.name]; else target[f.name] = v;
        changed(structural);
      };
      let input;
      const val = target[f.name];
      switch (f.type) {
        case "integer": case "number": case "money":
          input = el("input", {type: "number", id, value: val ?? "", min: f.minimum, max: f.maximum, step: f.type === "integer" ? 1 : "any",
            oninput: (e) => set(e.target.value === "" ? undefined : Number(e.target.value))});
          break;
        case "boolean":
          input = el("input", {type: "checkbox", id, checked: !!val, onchange: (e) => set(e.target.checked, true)});
          break;
        case "date": case "time": case "datetime":
          input = el("input", {type: f.type === "datetime" ? "datetime-local" : f.type, id, value: val ?? "", onchange: (e) => set(e.target.value)});
          break;
        case "choice":
          input = select([["", "—"], ...f.choices], val, (v) => set(f.choices.map(([c]) => c).find((c) => String(c) === v), true), id);
          break;
        case "choices": case "refs": {
          const options = f.type === "refs" ? [...(SOURCES[f.source] || [])] : f.choices;
          (val || []).forEach((v) => { if (!options.some(([o]) => o === v)) options.push([v, String(v)]); });
          input = el("select", {multiple: true, id, size: Math.min(7, Math.max(3, options.length)),
            onchange: (e) => set([...e.target.selectedOptions].map((o) => options[Number(o.value)][0]))},
          options.map(([v, label], n) => el("option", {value: String(n), selected: (val || []).includes(v), text: label})));
          if (f.type === "refs") {
            const more = el("input", {type: "text", placeholder: say("add: a, b"), "aria-label": `${f.label}: add new`,
              onchange: (e) => set([...(val || []), ...e.target.value.split(",").map((x) => x.trim()).filter(Boolean)], true)});
            input = el("span", {class: "kpj-stack"}, input, more);
            input.id = "";
            input.firstChild.id = id;
          }
          break;
        }
        case "ref": {
          const options = [...(SOURCES[f.source] || [])];
          if (!empty(val) && !options.some(([o]) => String(o) === String(val))) options.push([val, String(val)]);
          const other = el("input", {type: "text", placeholder: say("another name"), "aria-label": `${f.label}: ${say("another name")}`, hidden: true,
            onchange: (e) => set(e.target.value.trim())});
          const choice = select([["", "—"], ...options, ["\u0000other", say("Other…")]], val, (v) => {
            if (v === "\u0000other") { other.hidden = false; other.focus(); return; }
            set(options.map(([o]) => o).find((o) => String(o) === v), true);
          }, id);
          input = el("span", {class: "kpj-stack"}, choice, other);
          break;
        }
        case "duration": {
          const prefix = f.prefix || "";
          const unit = (UNITS.find(([u]) => prefix + u in config) || UNITS[1])[0];
          const write = (n, u) => {
            UNITS.forEach(([x]) => delete config[prefix + x]);
            if (n !== "") config[prefix + u] = Number(n);
            changed(false);
          };
          const number = el("input", {type: "number", id, min: 0, step: "any", value: config[prefix + unit] ?? "",
            oninput: (e) => write(e.target.value, units.value)});
          const units = select(UNITS, unit, (u) => write(number.value, u), null);
          units.setAttribute("aria-label", `${f.label}: unit`);
          input = el("span", {class: "kpj-inline"}, number, units);
          break;
        }
        case "properties": {
          const rows = Object.entries(val || {});
          const save = () => set(Object.fromEntries(rows.filter(([k]) => k)), false);
          const list = el("span", {class: "kpj-stack"});
          const draw = () => list.replaceChildren(...rows.map((pair, n) => el("span", {class: "kpj-inline"},
            el("input", {type: "text", value: pair[0], placeholder: say("property"), "aria-label": `${f.label}: property ${n + 1}`, oninput: (e) => { pair[0] = e.target.value; save(); }}),
            el("input", {type: "text", value: pair[1], placeholder: say("value"), "aria-label": `${f.label}: value ${n + 1}`, oninput: (e) => { pair[1] = e.target.value; save(); }}),
            el("button", {type: "button", "aria-label": say("Remove"), text: "✕", onclick: () => { rows.splice(n, 1); save(); draw(); }}))),
          el("button", {type: "button", class: "kpj-small", text: say("+ property"), onclick: () => { rows.push(["", ""]); draw(); }}));
          draw();
          input = list;
          input.id = id;
          break;
        }
        case "branch": {
          const others = steps.filter((s) => s.id !== (step && step.id)).map((s) => [s.id, "→ " + stepName(s)]);
          input = select([["", say("end of the journey")], ...others], val || "", (v) => set(v || null, true), id);
          break;
        }
        case "condition": {
          const value = obj === null ? config : (val || {});
          const apply = (next, structural) => {
            if (obj !== null) { set(next, structural); return; }
            if (next !== config) { Object.keys(config).forEach((k) => delete config[k]); Object.assign(config, next); }
            changed(structural);
          };
          input = conditionControl(value, apply, id, f.label, at);
          break;
        }
        case "rule": {
          if (!window.KeepersRuleBuilder || !(kinds.segment_condition || []).length) { input = jsonArea(val, set, id); break; }
          // the segment rule builder, over the page's segment conditions; the rule's JSON
          // under "Advanced" (both write the same value)
          const json = el("textarea", {rows: 4, spellcheck: "false", "aria-label": `${f.label}: JSON`, "data-key": `${key}.json`});
          const box = el("div", {class: "kpj-rule"});
          const show = (rules) => { json.value = JSON.stringify(rules, null, 2); };
          show(val);
          const builder = window.KeepersRuleBuilder.mount(box, {document: kinds, value: val, path: `steps.${key}`,
            onChange: (rules) => { show(rules); set(clone(rules), false); }});
          markRule(box, `steps.${key}`, at);
          json.addEventListener("change", () => {
            let parsed;
            try { parsed = JSON.parse(json.value); } catch (err) { json.setCustomValidity(say("Not valid JSON")); json.reportValidity(); return; }
            json.setCustomValidity("");
            set(parsed, false);
            builder.set(parsed);
          });
          input = el("div", {class: "kpj-stack", id}, box,
            el("details", {class: "kpj-rule-json"}, el("summary", {text: say("Advanced: the rule as JSON")}), json));
          break;
        }
        case "list": {
          const items = val || [];
          const list = el("span", {class: "kpj-stack"});
          items.forEach((item, n) => {
            const box = el("fieldset", {class: "kpj-item"}, el("legend", {text: item.name || `${f.label} ${n + 1}`}));
            f.fields.forEach((g) => box.append(control(g, item, changed, false, `${key}.${n}.${g.name}`, step, `${at}[${n}].${g.name}`)));
            box.append(el("button", {type: "button", class: "kpj-small", text: say("Remove"), onclick: () => { items.splice(n, 1); set(items, true); }}));
            list.append(box);
          });
          list.append(el("button", {type: "button", class: "kpj-small", text: `+ ${f.label}`,
            onclick: () => { items.push(defaults(f.fields, {name: `${String.fromCharCode(65 + items.length)}`})); set(items, true); }}));
          input = list;
          input.id = id;
          break;
        }
        case "texts":  // a list of texts, one a line
          input = el("textarea", {id, rows: 3, oninput: (e) => set(e.target.value.split("\n").map((t) => t.trim()).filter(Boolean))});
          input.value = (Array.isArray(val) ? val : []).join("\n");
          break;
        default: // text and anything new: text, or JSON for an object
          if (val !== undefined && typeof val === "object") {
            input = jsonArea(val, set, id);
          } else {
            input = el("input", {type: "text", id, value: val ?? "", oninput: (e) => set(e.target.value)});
          }
      }
      const focusable = input.matches("input, select, textarea") ? input : input.querySelector("input, select, textarea");
      if (focusable) focusable.dataset.key = key;
      const here = wrong && !claimed;
      return el("div", {class: `kpj-field${here ? " kpj-field-invalid" : ""}`, "data-field": f.name},
        el("label", {for: id, text: f.label + (f.required ? " *" : "")}), input,
        f.help ? el("p", {class: "help", text: f.help}) : null,
        here ? el("ul", {class: "errorlist"}, el("li", {text: problem.message})) : null);
    }
    // The server's error inside this rule ("steps[0].config.rule.all[1].value") on the rule
    // builder's row it names (data-path "<prefix>.all[1]"): the nearest group or condition
    // up the path, its input marked invalid. An error on the rule as a whole stays on the field.
    function markRule(box, prefix, at) {
      if (!problem || at === undefined) return;
      const mine = base + at;
      const rest = problem.path.startsWith(mine) ? problem.path.slice(mine.length) : null;
      if (!rest || !/^[.[]/.test(rest)) return;
      let path = prefix + rest;
      const input = box.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
      let row = null;
      while (path.length >= prefix.length && !(row = box.querySelector(`.rb-node[data-path="${CSS.escape(path)}"]`))) {
        const up = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
        if (up === path) break;
        path = up;
      }
      if (!row) return;
      row.classList.add("rb-error");
      const line = row.querySelector(":scope > .rb-row, :scope > .rb-head");
      (line || row).after(el("ul", {class: "errorlist kpj-rule-error", role: "alert"}, el("li", {text: problem.message})));
      claimed = true;
    }
    function jsonArea(val, set, id) {
      const area = el("textarea", {id, rows: 3, spellcheck: "false", onchange: (e) => { try { set(JSON.parse(e.target.value)); } catch (err) { e.target.setCustomValidity(say("Not valid JSON")); e.target.reportValidity(); } }});
      area.value = val === undefined ? "" : JSON.stringify(val);
      return area;
    }
    function conditionControl(value, apply, id, label, at) {
      const names = Object.keys(COND);
      const box = el("span", {class: "kpj-stack"});
      if (!names.length) { // no condition kind describes itself yet: the condition as JSON
        const area = el("textarea", {id, rows: 3, spellcheck: "false", "aria-label": label, onchange: (e) => {
          try { apply(JSON.parse(e.target.value), true); } catch (err) { e.target.setCustomValidity(say("Not valid JSON")); e.target.reportValidity(); }
        }});
        area.value = JSON.stringify(value);
        box.append(area);
        return box;
      }
      const options = names.map((n) => [n, COND[n].label]);
      if (value.kind && !COND[value.kind]) options.push([value.kind, value.kind]);
      box.append(select(options, value.kind, (k) => apply(defaults(COND[k] ? COND[k].fields : [], {kind: k}), true), id));
      const kind = COND[value.kind];
      if (kind) kind.fields.filter((g) => shown(g, value)).forEach((g) => box.append(control(g, value, (s) => apply(s ? fitCondition(kind, value) : value, s), false, `cond.${g.name}`, {config: value}, `${at}.${g.name}`)));
      return box;
    }
    // After a choice that shows other fields (an operator): a value no shown field holds is
    // dropped, and one shown under another type is carried over ("gold" to ["gold"] for
    // "one of", the first of a list back for "equal to"), else the new field's default.
    function fitCondition(kind, value) {
      const named = new Set(kind.fields.map((g) => g.name));
      const visible = kind.fields.filter((g) => shown(g, value));
      named.forEach((name) => {
        const g = visible.find((x) => x.name === name);
        const v = value[name];
        if (!g) { delete value[name]; return; }
        if (v === undefined) { if (g.default !== undefined) value[name] = clone(g.default); return; }
        if (g.type === "texts" && !Array.isArray(v)) value[name] = empty(v) ? clone(g.default) || [] : [String(v)];
        else if (g.type === "text" && Array.isArray(v)) value[name] = v.length ? String(v[0]) : "";
        else if (NUMBERS.includes(g.type) && typeof v !== "number") {
          if (g.default !== undefined) value[name] = clone(g.default); else delete value[name];
        }
      });
      return value;
    }
    function select(options, value, onchange, id) {
      const node = el("select", {id, onchange: (e) => onchange(e.target.value)});
      options.forEach(([v, label]) => node.append(el("option", {value: String(v), selected: String(v) === String(value ?? ""), text: label})));
      return node;
    }

    // --- live counts ---------------------------------------------------------------------
    function poll() {
      if (!data.counts_url || document.hidden) return;
      fetch(data.counts_url, {credentials: "same-origin"}).then((r) => r.json()).then((answer) => {
        if (JSON.stringify(answer.counts) === JSON.stringify(counts)) return;
        counts = answer.counts;
        draw();
      }).catch(() => {});
    }

    textarea.addEventListener("change", () => { if (read()) { write(true); } });
    ["trigger", "goals", "exits"].forEach((name) => { if (form.elements[name] && form.elements[name].addEventListener) form.elements[name].addEventListener("input", draw); });
    document.addEventListener("click", (e) => {
      if (!palette.hidden && !palette.contains(e.target) && !(opener && opener.contains(e.target))) palette.hidden = true;
    });
    if (!read()) {
      host.prepend(el("p", {class: "errornote", text: say("The steps JSON is not valid; fix it in the advanced view to use the builder.")}));
      advanced.open = true;
    }
    draw();
    if (steps.length) validate();
    if (data.counts_url) setInterval(poll, 4000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const textarea = document.getElementById("id_steps");
    const kinds = document.getElementById("kp-kinds");
    const data = document.getElementById("kp-journey-data");
    if (textarea && kinds && data) mount(textarea, JSON.parse(kinds.textContent), JSON.parse(data.textContent));
  });
})();
