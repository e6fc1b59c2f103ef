/* Keepers segment rule builder: groups (all / any / not) of conditions, each condition's form
   generated from its description on the server (crm/kinds.py, embedded as the "rb-kinds"
   json_script: {segment_condition: [...], sources: {...}, text: {...}}). No per-kind code: a
   condition registered on the server appears here as it is. The JSON in the "rules"
   textarea stays the truth, editable under "Advanced"; the live count previews it.
   Other editors (a journey's condition step) draw one with
   window.KeepersRuleBuilder.mount(container, {document, value, onChange}). */
(function () {
  "use strict";
  let uid = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === undefined || v === null || v === false) return;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "checked" || k === "selected" || k === "value") node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    });
    children.flat().forEach((c) => {
      if (c !== undefined && c !== null && c !== "") node.append(c instanceof Node ? c : document.createTextNode(c));
    });
    return node;
  }

  const isGroup = (node) => node && typeof node === "object" && ["all", "any", "not"].some((k) => k in node);
  const same = (a, b) => String(a) === String(b);

  /* One builder over a kinds document ({segment_condition: [...], sources, text}): every
     instance has its own, so the segment page and a journey's side panel can each draw one. */
  function builder(data) {
    const KINDS = {};
    const ORDER = [];
    (data.segment_condition || []).forEach((k) => { KINDS[k.name] = k; ORDER.push(k.name); });
    const SOURCES = data.sources || {};
    const TEXT = data.text || {};
    /* A new condition of `kind`: its example, with references this shop does not have (the
       example's tier "Gold", segment 1) replaced by what it has. */
    function fromExample(kind) {
      const node = structuredClone(kind.extra.example);
      kind.fields.forEach((f) => {
        const opts = SOURCES[f.source] || [];
        if (!(f.name in node) || !opts.length || !visible(f, node, kind)) return;
        const known = (v) => opts.some(([o]) => same(o, v));
        if (f.type === "ref" && !known(node[f.name])) node[f.name] = opts[0][0];
        if (f.type === "refs" && Array.isArray(node[f.name])) {
          const kept = node[f.name].filter(known);
          node[f.name] = kept.length ? kept : [opts[0][0]];
        }
      });
      return normalize(node);
    }
    const defaultCondition = () => fromExample(KINDS[ORDER[0]]);

    // --- a condition's values, from its description ---------------------------------------
    function current(node, kind, key) {
      if (key in node) return node[key];
      const withDefault = kind.fields.find((f) => f.name === key && f.default !== undefined);
      return withDefault ? withDefault.default : undefined;
    }

    function visible(field, node, kind) {
      return Object.entries(field.when || {}).every(([key, values]) =>
        values.some((v) => same(v, current(node, kind, key))));
    }

    function options(field) {
      return field.choices || SOURCES[field.source] || [];
    }

    function fit(field, value) {
      const fallback = field.default !== undefined && field.default !== null ? field.default : undefined;
      switch (field.type) {
        case "choice":
          if (value !== undefined && options(field).some(([v]) => same(v, value))) {
            return options(field).find(([v]) => same(v, value))[0];
          }
          if (fallback !== undefined) return fallback;
          return field.required && options(field).length ? options(field)[0][0] : undefined;
        case "ref":
          if (Array.isArray(value)) value = value[0];
          if (value !== undefined && value !== null && value !== "") return value;
          if (fallback !== undefined) return fallback;
          return field.required && options(field).length ? options(field)[0][0] : undefined;
        case "refs":
        case "choices":
          if (Array.isArray(value)) return value;
          if (value !== undefined && value !== null && value !== "") return [value];
          return fallback !== undefined ? fallback : (field.required ? [] : undefined);
        case "integer":
        case "number":
        case "money":
          if (typeof value === "number") return value;
          if (typeof value === "string" && value.trim() !== "" && !isNaN(Number(value))) return Number(value);
          return fallback;
        case "text":
        case "date":
        case "datetime":
        case "time":
          if (typeof value === "string") return value;
          if (typeof value === "number") return String(value);
          return fallback !== undefined ? fallback : (field.required ? "" : undefined);
        case "texts":  // a list of texts; one text (an "is" before) becomes the first
          if (Array.isArray(value)) return value;
          if ((typeof value === "string" && value !== "") || typeof value === "number") return [value];
          return fallback !== undefined ? fallback : (field.required ? [] : undefined);
        case "boolean":
          return typeof value === "boolean" ? value : fallback;
        case "properties":
          return value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
        default:
          return value === undefined ? fallback : value;
      }
    }

    /* Keep what the visible fields hold (fitted to their types, defaults filled in) and drop
       what no visible field shows; repeated, since a default can show or hide fields. */
    function normalize(node) {
      const kind = KINDS[node.type];
      if (!kind) return node;
      for (let round = 0; round < 4; round++) {
        const before = JSON.stringify(node);
        const shown = kind.fields.filter((f) => visible(f, node, kind));
        const names = new Set(shown.map((f) => f.name));
        Object.keys(node).forEach((key) => { if (key !== "type" && !names.has(key)) delete node[key]; });
        shown.forEach((f) => {
          const value = fit(f, node[f.name]);
          if (value === undefined) delete node[f.name]; else node[f.name] = value;
        });
        if (JSON.stringify(node) === before) break;
      }
      return node;
    }

    // --- controls --------------------------------------------------------------------------
    function control(field, value, set, path) {
      const id = "rb-" + (++uid);
      const common = {id, "data-path": path + "." + field.name, "aria-describedby": field.help ? id + "-help" : null};
      let input;
      const opts = options(field);
      if (field.type === "choice" || (field.type === "ref" && opts.length)) {
        const list = opts.slice();
        if (value !== undefined && !list.some(([v]) => same(v, value))) list.push([value, String(value)]);
        input = el("select", {...common, onchange: (e) => {
          const picked = list.find(([v]) => same(v, e.target.value));
          set(picked ? picked[0] : undefined, true);
        }},
        field.required && value !== undefined ? "" : el("option", {value: ""}, "—"),
        list.map(([v, label]) => el("option", {value: String(v), selected: same(v, value)}, label)));
      } else if (field.type === "choices" || field.type === "refs") {
        const chosen = Array.isArray(value) ? value : [];
        const list = opts.slice();
        chosen.forEach((v) => { if (!list.some(([o]) => same(o, v))) list.push([v, String(v)]); });
        const box = el("fieldset", {class: "rb-choices", "data-path": common["data-path"]},
          el("legend", {}, field.label),
          list.length ? "" : el("span", {class: "help"}, TEXT.no_options),
          list.map(([v, label]) => {
            const cid = "rb-" + (++uid);
            return el("span", {class: "rb-choice"},
              el("input", {type: "checkbox", id: cid, checked: chosen.some((c) => same(c, v)), onchange: (e) => {
                const next = chosen.filter((c) => !same(c, v));
                if (e.target.checked) next.push(v);
                set(next, true);
              }}),
              el("label", {for: cid}, label));
          }));
        return el("span", {class: "rb-field"}, box, help(field, id));
      } else if (field.type === "boolean") {
        input = el("input", {...common, type: "checkbox", checked: !!value, onchange: (e) => set(e.target.checked, true)});
      } else if (field.type === "properties") {
        return properties(field, value, set, common, id);
      } else if (field.type === "texts") {
        return texts(field, value, set, common, id);
      } else if (["integer", "number", "money"].includes(field.type)) {
        input = el("input", {...common, type: "number", value: value === undefined ? "" : String(value),
          min: field.minimum, max: field.maximum, step: field.type === "integer" ? "1" : "any",
          oninput: (e) => set(e.target.value === "" ? undefined : Number(e.target.value), false)});
      } else if (["text", "date", "datetime", "time", "ref"].includes(field.type)) {
        const type = {date: "date", time: "time", datetime: "datetime-local"}[field.type] || "text";
        const listId = opts.length ? id + "-options" : null;
        input = el("input", {...common, type, value: value === undefined ? "" : String(value), list: listId,
          oninput: (e) => set(e.target.value === "" && !field.required ? undefined : e.target.value, false)});
        if (listId) input = [input, el("datalist", {id: listId}, opts.map(([v, label]) => el("option", {value: String(v)}, label)))];
      } else {  // a nested rule, a list…: its JSON
        input = el("input", {...common, value: value === undefined ? "" : JSON.stringify(value), onchange: (e) => {
          try { set(e.target.value ? JSON.parse(e.target.value) : undefined, true); } catch (err) { e.target.setCustomValidity(TEXT.bad_json); }
        }});
      }
      return el("span", {class: "rb-field"}, el("label", {for: id}, field.label), input, help(field, id));
    }

    function help(field, id) {
      return field.help ? el("small", {id: id + "-help", class: "help"}, field.help) : "";
    }

    /* A list of texts as tags: type one and press Enter (or "Add"; commas separate several),
       ✕ removes one; a source's options are suggestions, any other text is taken. Edited
       in place, without redrawing the builder, so the input keeps the focus. */
    function texts(field, value, set, common, id) {
      const items = Array.isArray(value) ? value.slice() : [];
      const opts = options(field);
      const listId = opts.length ? id + "-options" : null;
      const tokens = el("span", {class: "rb-tokens", role: "list", "aria-label": field.label});
      const input = el("input", {...common, type: "text", list: listId, placeholder: TEXT.text_placeholder,
        onkeydown: (e) => { if (e.key === "Enter" || e.key === ",") { e.preventDefault(); add(); } },
        onchange: () => add()});
      const save = () => set(items.slice(), false);
      const drawTokens = () => tokens.replaceChildren(...items.map((t, i) => el("span", {class: "rb-token", role: "listitem"},
        String(t),
        el("button", {type: "button", class: "rb-remove", "aria-label": (TEXT.remove_text || "Remove") + " " + t, onclick: () => {
          items.splice(i, 1); drawTokens(); save(); input.focus();
        }}, "✕"))));
      function add() {
        const fresh = input.value.split(",").map((t) => t.trim()).filter((t) => t && !items.some((i) => same(i, t)));
        input.value = "";
        if (!fresh.length) return;
        items.push(...fresh);
        drawTokens();
        save();
      }
      drawTokens();
      return el("span", {class: "rb-field"}, el("label", {for: id}, field.label), tokens,
        el("span", {class: "rb-row"}, input,
          el("button", {type: "button", class: "button rb-add-text", onclick: () => { add(); input.focus(); }}, TEXT.add_text || "+")),
        listId ? el("datalist", {id: listId}, opts.map(([v, label]) => el("option", {value: String(v)}, label))) : "",
        help(field, id));
    }

    function properties(field, value, set, common, id) {
      const pairs = Object.entries(value || {});
      const write = (next, redraw) => set(next.length ? Object.fromEntries(next) : undefined, redraw);
      return el("span", {class: "rb-field"}, el("fieldset", {class: "rb-properties", "data-path": common["data-path"]},
        el("legend", {}, field.label),
        pairs.map(([k, v], i) => el("span", {class: "rb-property"},
          el("input", {"aria-label": TEXT.property, value: k, oninput: (e) => {
            const next = pairs.slice(); next[i] = [e.target.value, v]; write(next, false);
          }}),
          el("input", {"aria-label": TEXT.property_value, value: String(v), oninput: (e) => {
            const next = pairs.slice(); next[i] = [k, e.target.value]; write(next, false);
          }}),
          el("button", {type: "button", class: "rb-remove", "aria-label": TEXT.remove_property, onclick: () => {
            const next = pairs.slice(); next.splice(i, 1); write(next, true);
          }}, "✕"))),
        el("button", {type: "button", onclick: () => write(pairs.concat([["", ""]]), true)}, TEXT.add_property)),
      help(field, id));
    }

    // --- groups and conditions ---------------------------------------------------------------
    /* The tree is edited in place: `commit(redraw)` writes it to the textarea (and redraws
       when what is shown may change); `replace(node)` puts a new node where this one was. */
    function kindSelect(node, replace) {
      const id = "rb-" + (++uid);
      const groups = new Map();
      ORDER.forEach((name) => {
        const group = KINDS[name].group || "";
        if (!groups.has(group)) groups.set(group, []);
        groups.get(group).push(KINDS[name]);
      });
      const known = node.type in KINDS;
      const select = el("select", {id, class: "rb-kind", onchange: (e) =>
        replace(fromExample(KINDS[e.target.value]))},
      known ? "" : el("option", {value: "", selected: true}, String(node.type)),
      [...groups].map(([group, kinds]) => el("optgroup", {label: group || "—"},
        kinds.map((k) => el("option", {value: k.name, selected: k.name === node.type}, k.label)))));
      return el("span", {class: "rb-field"}, el("label", {for: id}, TEXT.condition), select);
    }

    /* Whether the form can show this node as it is: every key has a visible field and every
       choice holds one of its options. A hand-written node that cannot (an operator the form
       does not offer) is left to the JSON, so a click elsewhere never rewrites it. */
    function representable(node, kind) {
      const shown = kind.fields.filter((f) => visible(f, node, kind));
      return Object.keys(node).every((key) => key === "type" || shown.some((f) => f.name === key)) &&
        shown.every((f) => f.type !== "choice" || !(f.name in node) ||
          options(f).some(([v]) => same(v, node[f.name])));
    }

    function renderCondition(node, replace, remove, commit, path) {
      const kind = KINDS[node.type];
      const row = [kindSelect(node, replace)];
      if (kind && !representable(node, kind)) {
        row.push(el("code", {class: "rb-json"}, JSON.stringify(node)),
          el("span", {class: "help"}, TEXT.json_only));
      } else if (kind) {
        kind.fields.filter((f) => visible(f, node, kind)).forEach((f) => {
          row.push(control(f, node[f.name], (value, redraw) => {
            if (value === undefined) delete node[f.name]; else node[f.name] = value;
            if (redraw) normalize(node);
            commit(redraw);
          }, path));
        });
      } else {
        row.push(el("span", {class: "help"}, TEXT.unknown_kind));
      }
      return el("div", {class: "rb-node rb-condition", "data-path": path},
        el("div", {class: "rb-row"}, row,
          remove ? el("button", {type: "button", class: "rb-remove", "aria-label": TEXT.remove_condition, onclick: remove}, "✕") : ""),
        kind && kind.help ? el("small", {class: "help"}, kind.help) : "");
    }

    function render(node, replace, remove, commit, path) {
      if (!isGroup(node)) return renderCondition(node, replace, remove, commit, path);
      const mode = ["all", "any", "not"].find((k) => k in node);
      const children = mode === "not" ? [node.not] : node[mode];
      const rebuild = (m, list) => (m === "not" ? {not: list.length === 1 ? list[0] : {all: list}} : {[m]: list});
      const id = "rb-" + (++uid);
      const box = el("div", {class: "rb-node rb-group", "data-path": path},
        el("div", {class: "rb-head"},
          el("label", {for: id}, TEXT.match),
          el("select", {id, class: "rb-mode", onchange: (e) => replace(rebuild(e.target.value, children))},
            ["all", "any", "not"].map((m) => el("option", {value: m, selected: m === mode}, TEXT[m]))),
          remove ? el("button", {type: "button", class: "rb-remove", "aria-label": TEXT.remove_group, onclick: remove}, "✕") : ""));
      children.forEach((child, i) => {
        const childPath = mode === "not" ? path + ".not" : `${path}.${mode}[${i}]`;
        const put = (c) => {
          if (mode === "not") node.not = c; else node[mode][i] = c;
          commit(true);
        };
        const drop = children.length > 1 ? () => { node[mode].splice(i, 1); commit(true); } : null;
        box.append(render(child, put, drop, commit, childPath));
      });
      if (mode !== "not") {
        const add = (item) => { node[mode].push(item); commit(true); };
        box.append(el("div", {class: "rb-add"},
          el("button", {type: "button", class: "button rb-add-condition", onclick: () => add(defaultCondition())}, TEXT.add_condition),
          el("button", {type: "button", class: "button rb-add-group", onclick: () =>
            add({[mode === "all" ? "any" : "all"]: [defaultCondition()]})}, TEXT.add_group)));
      }
      return box;
    }

    return {render, defaultCondition, text: TEXT};
  }

  // --- mounting -------------------------------------------------------------------------
  /* The public door (window.KeepersRuleBuilder.mount): draw a builder for the rule `value`
     inside `container`, over a kinds document that holds the segment conditions; every edit
     calls `onChange(rules)` with the whole tree. An empty rule starts as one default
     condition (reported at once: saved as shown). Returns {set(value)} to redraw it from a
     rule edited elsewhere (the JSON). `path` prefixes the data-path of each node. */
  function mountRule(container, {document: doc, value, onChange, path}) {
    const b = builder(doc);
    const report = onChange || (() => {});
    let rules;
    const host = el("div", {class: "rb", role: "group", "aria-label": b.text.builder});
    container.append(host);
    const redraw = () => {
      host.replaceChildren();
      const commit = (again) => { report(rules); if (again) redraw(); };
      host.append(b.render(rules, (next) => { rules = next; commit(true); }, null, commit, path || "rules"));
    };
    const set = (next) => {
      rules = next && typeof next === "object" ? JSON.parse(JSON.stringify(next)) : null;
      if (!rules || !Object.keys(rules).length) {
        rules = {all: [b.defaultCondition()]};
        report(rules);
      } else if (!isGroup(rules)) {
        rules = {all: [rules]};
      }
      redraw();
    };
    set(value);
    return {set};
  }

  /* The segment page: the builder above the "rules" textarea, which stays the truth (and
     is what is saved), editable under "Advanced"; the live count previews it. */
  let pageText = {};
  function mountSegment(textarea, data) {
    pageText = data.text || {};
    const TEXT = pageText;
    const area = el("div", {});
    const advanced = el("details", {class: "rb-advanced"}, el("summary", {}, TEXT.advanced));
    textarea.parentNode.insertBefore(area, textarea);
    textarea.parentNode.insertBefore(advanced, textarea);
    advanced.append(textarea);
    const kindField = document.getElementById("id_kind");
    const isStatic = () => kindField && kindField.value === "static";
    let timer = null;

    const write = (rules) => {  // the textarea is what is saved; the count follows it
      textarea.value = JSON.stringify(rules, null, 2);
      clearTimeout(timer);
      timer = setTimeout(() => preview(), 400);
    };
    const redraw = () => {
      area.replaceChildren();
      if (isStatic()) { area.append(el("div", {class: "rb"}, el("p", {class: "help"}, TEXT.static))); return; }
      let rules;
      try { rules = JSON.parse(textarea.value || "{}"); } catch (e) {
        advanced.open = true;
        area.append(el("div", {class: "rb"}, el("p", {class: "errornote"}, TEXT.invalid_json)));
        return;
      }
      const untouched = !rules || typeof rules !== "object" || !Object.keys(rules).length;
      let quiet = untouched;  // a new rule's default condition: saved as shown, not counted
      mountRule(area, {document: data, value: rules, path: "rules", onChange: (next) => {
        if (quiet) {
          quiet = false;
          textarea.value = JSON.stringify(next, null, 2);
        } else {
          write(next);
        }
      }});
    };
    textarea.addEventListener("change", redraw);
    if (kindField) kindField.addEventListener("change", () => {
      if (isStatic()) textarea.value = "";
      redraw();
    });
    redraw();
  }

  async function preview() {
    const out = document.getElementById("rb-preview");
    const button = document.getElementById("rb-preview-button");
    const textarea = document.getElementById("id_rules");
    if (!out || !button || !textarea) return;
    document.querySelectorAll(".rb .rb-error").forEach((n) => n.classList.remove("rb-error"));
    if (!textarea.value.trim()) { out.replaceChildren(); return; }
    const TEXT = pageText;
    out.textContent = TEXT.counting || "…";
    const body = new FormData();
    body.append("rules", textarea.value);
    body.append("csrfmiddlewaretoken", document.querySelector("[name=csrfmiddlewaretoken]").value);
    const response = await fetch(button.dataset.url, {method: "POST", body, credentials: "same-origin"});
    const data = await response.json();
    out.replaceChildren();
    if (!response.ok) {
      out.append(el("p", {class: "errornote"}, data.message));
      const at = data.path && document.querySelector(`.rb [data-path="${CSS.escape(data.path)}"]`);
      if (at) at.classList.add("rb-error");
      return;
    }
    out.append(el("p", {class: "rb-count"}, el("strong", {}, data.count.toLocaleString()), " " + TEXT.match_now),
      el("ul", {}, data.sample.map((c) => el("li", {}, el("a", {href: c.url}, c.label), " — " + c.stage))));
  }

  window.KeepersRuleBuilder = {mount: mountRule};
  document.addEventListener("DOMContentLoaded", () => {
    const textarea = document.getElementById("id_rules");
    const script = document.getElementById("rb-kinds");
    if (textarea && !textarea.disabled && script) mountSegment(textarea, JSON.parse(script.textContent));
    const button = document.getElementById("rb-preview-button");
    if (button) button.addEventListener("click", () => preview());
  });
})();
