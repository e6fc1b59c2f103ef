/* Keepers kinds form: edits a form field's JSON — one config, or a list of them with
   data-many — as a form generated from a kinds document (crm.kinds.kinds_document, embedded
   by crm.kind_forms.KindWidget): choose the kind, then fill in its fields. Each input is
   named by its path (trigger.type, goals.0.event, trigger.where.0.key); the server
   assembles the JSON from them and its validation error comes back on the input its path
   names (data-error-path). "Edit as JSON" posts the textarea instead.
   No dependencies; another editor reuses it through window.KeepersKindForm:
   mount(container), or entry(...) to draw one config's form inside its own. */
(function () {
  "use strict";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v === true) node.setAttribute(k, "");
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    });
    children.flat().forEach((c) => {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(c));
    });
    return node;
  }

  let counter = 0;
  const uid = () => "kf-" + (++counter);
  const clone = (value) => (value === undefined ? value : JSON.parse(JSON.stringify(value)));
  const empty = (value) => value === undefined || value === null || value === "";
  const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

  function shown(field, config) {
    return !field.when || Object.entries(field.when).every(([k, values]) => values.includes(config[k]));
  }

  // The field each name stands for in `config` (two fields may share a name under
  // different `when`s: an attribute's value is text for "equal to", a number for "more than").
  function shownByName(fields, config) {
    const out = {};
    fields.forEach((f) => { if (shown(f, config) && !(f.name in out)) out[f.name] = f; });
    return out;
  }

  function defaults(kind, key) {
    const config = key ? {[key]: kind.name} : {};
    kind.fields.forEach((f) => {
      if (!empty(f.default) && shown(f, config) && f.type !== "duration" && !(f.name in config)) {
        config[f.name] = clone(f.default);
      }
    });
    return config;
  }

  // After a field others depend on changed: drop what no longer applies, start what now does.
  function reconcile(fields, config, before) {
    const after = shownByName(fields, config);
    new Set([...Object.keys(before), ...Object.keys(after)]).forEach((name) => {
      if (before[name] === after[name]) return;
      delete config[name];
      if (after[name] && !empty(after[name].default)) config[name] = clone(after[name].default);
    });
  }

  function typed(options, text) {
    const found = options.find(([value]) => String(value) === text);
    return found ? found[0] : text;
  }

  function select(name, options, value, {required, multiple} = {}) {
    const values = multiple ? (Array.isArray(value) ? value : []).map(String) : [String(value ?? "")];
    const node = el("select", {name, multiple: !!multiple});
    if (!required && !multiple) node.append(el("option", {value: ""}, "—"));
    const known = new Set(options.map(([v]) => String(v)));
    const all = options.slice();
    values.forEach((v) => { if (v !== "" && !known.has(v)) all.push([v, v]); });  // kept, for clean to judge
    all.forEach(([v, label]) => {
      const option = el("option", {value: String(v)}, String(label));
      option.selected = values.includes(String(v));
      node.append(option);
    });
    return node;
  }

  /* One config's form: the kind's chooser (when `key`), its help and its fields. `ctx` holds
     the document's sources, `changed(redraw)` (after any edit) and the nested registries. */
  function entry(kinds, key, config, path, ctx) {
    const box = el("div", {class: "kf-body"});
    let kind = key ? kinds.find((k) => k.name === config[key]) : kinds[0];
    if (key) {
      const chooser = select(`${path}.${key}`, kinds.map((k) => [k.name, k.label]), config[key], {required: true});
      chooser.addEventListener("change", () => {
        const chosen = kinds.find((k) => k.name === chooser.value);
        Object.keys(config).forEach((k) => delete config[k]);
        Object.assign(config, defaults(chosen, key));
        ctx.changed(true);
      });
      box.append(wrap(`${path}.${key}`, ctx.kindLabel, chooser, ""));
    }
    if (!kind) return box;
    if (kind.help) box.append(el("p", {class: "kf-help"}, kind.help));
    box.append(fields(kind.fields, config, path, ctx));
    return box;
  }

  function fields(list, config, path, ctx) {
    const box = el("div", {class: "kf-fields"});
    const controllers = new Set(list.flatMap((f) => Object.keys(f.when || {})));
    list.forEach((f) => {
      if (!shown(f, config)) return;
      const fieldCtx = Object.assign({}, ctx, {
        changed(redraw) {
          if (controllers.has(f.name)) {
            const before = shownByName(list, Object.assign({}, config, {[f.name]: fieldCtx.previous}));
            reconcile(list, config, before);
          }
          ctx.changed(redraw || controllers.has(f.name));
        },
        previous: clone(config[f.name]),
      });
      box.append(field(f, config, `${path}.${f.name}`, fieldCtx));
    });
    return box;
  }

  function wrap(path, label, control, help, required) {
    const id = control.id || uid();
    if (!control.id && control.matches && control.matches("input, select, textarea")) control.id = id;
    return el("div", {class: "kf-field", "data-path": path},
      el("label", {for: id, class: required ? "required" : null}, label), control,
      help ? el("p", {class: "help"}, help) : null);
  }

  function set(config, name, value) {
    if (empty(value) || (Array.isArray(value) && !value.length)) delete config[name];
    else config[name] = value;
  }

  function field(f, config, path, ctx) {
    const value = config[f.name];
    const label = f.label;
    const update = (v, redraw) => { set(config, f.name, v); ctx.changed(redraw); };
    let control;
    switch (f.type) {
      case "integer": case "number": case "money":
        control = el("input", {type: "number", name: path, value: value ?? "", step: f.type === "integer" ? "1" : "any",
          min: f.minimum, max: f.maximum, required: f.required});
        control.addEventListener("input", () => update(control.value === "" ? undefined : Number(control.value)));
        break;
      case "boolean":
        control = el("input", {type: "checkbox", name: path, value: "on", id: uid()});
        control.checked = !!value;
        control.addEventListener("change", () => update(control.checked || undefined));
        return el("div", {class: "kf-field", "data-path": path},
          el("label", {class: "kf-check", for: control.id}, control, label),
          f.help ? el("p", {class: "help"}, f.help) : null);
      case "choice": case "choices": case "ref": case "refs": {
        const options = f.type.startsWith("ref") ? (ctx.sources[f.source] || []) : f.choices;
        const multiple = f.type === "choices" || f.type === "refs";
        control = select(path, options, value, {required: f.required && !empty(value), multiple});
        control.addEventListener("change", () => update(multiple
          ? Array.from(control.selectedOptions, (o) => typed(options, o.value))
          : (control.value === "" ? undefined : typed(options, control.value)), true));
        break;
      }
      case "duration":
        return wrap(path, label, duration(f, config, path, ctx), f.help);
      case "properties":
        return wrap(path, label, properties(f, config, path, ctx), f.help);
      case "texts": {  // one a line; a source's options are listed as suggestions
        control = el("textarea", {name: path, rows: 3, cols: 40, required: f.required});
        control.value = (Array.isArray(value) ? value : []).join("\n");
        control.addEventListener("input", () => update(control.value.split("\n").map((t) => t.trim()).filter(Boolean)));
        const known = (ctx.sources[f.source] || []).map(([v]) => String(v));
        return wrap(path, label, control, [f.help, known.length ? known.join(", ") : ""].filter(Boolean).join(" — "), f.required);
      }
      case "rule":
        control = el("textarea", {name: path, rows: 3, cols: 60});
        control.value = value === undefined ? "" : JSON.stringify(value);
        control.addEventListener("input", () => {
          try { update(control.value.trim() ? JSON.parse(control.value) : undefined); } catch (e) { /* judged on save */ }
        });
        break;
      case "condition": {
        const kinds = (ctx.registries && ctx.registries.condition) || [];
        if (!isObject(value)) config[f.name] = kinds.length ? defaults(kinds[0], "kind") : {};
        return wrap(path, label, el("div", {class: "kf-entry"}, entry(kinds, "kind", config[f.name], path, ctx)), f.help);
      }
      case "list":
        return wrap(path, label, list(f, config, path, ctx), f.help);
      default: {  // text, date, datetime, time, branch
        const type = {date: "date", datetime: "datetime-local", time: "time"}[f.type] || "text";
        control = el("input", {type, name: path, value: value ?? "", required: f.required});
        control.addEventListener("input", () => update(control.value.trim() || undefined));
        if (f.source) {  // suggestions, and any other value (an event not seen yet)
          const options = el("datalist", {id: uid()});
          (ctx.sources[f.source] || []).forEach(([v, l]) => options.append(el("option", {value: String(v)}, String(l))));
          control.setAttribute("list", options.id);
          const wrapped = wrap(path, label, control, f.help, f.required);
          wrapped.append(options);
          return wrapped;
        }
      }
    }
    return wrap(path, label, control, f.help, f.required);
  }

  function duration(f, config, path, ctx) {
    const units = [["minutes", "min"], ["hours", "h"], ["days", "d"]];
    const current = units.find(([u]) => (f.prefix + u) in config) || units[1];
    const amount = el("input", {type: "number", name: path, step: "any", min: 0, value: config[f.prefix + current[0]] ?? ""});
    const unit = select(`${path}.unit`, units, current[0], {required: true});
    const update = () => {
      units.forEach(([u]) => delete config[f.prefix + u]);
      if (amount.value !== "") config[f.prefix + unit.value] = Number(amount.value);
      ctx.changed(false);
    };
    amount.addEventListener("input", update);
    unit.addEventListener("change", update);
    amount.id = uid();
    return el("span", {class: "kf-row"}, amount, unit);
  }

  // A property row without a name yet is only on screen: kept here across redraws, as long
  // as the rows still say what the config holds.
  const pendingRows = new WeakMap();

  function properties(f, config, path, ctx) {
    const held = isObject(config[f.name]) ? config[f.name] : {};
    const saved = (pendingRows.get(config) || {})[f.name];
    const same = saved && JSON.stringify(Object.fromEntries(saved.filter(([k]) => k.trim()).map(([k, v]) => [k.trim(), v])))
      === JSON.stringify(Object.fromEntries(Object.entries(held).map(([k, v]) => [k, String(v)])));
    const rows = same ? saved : Object.entries(held).map(([k, v]) => [k, String(v)]);
    pendingRows.set(config, Object.assign(pendingRows.get(config) || {}, {[f.name]: rows}));
    const box = el("div", {});
    const save = (redraw) => {
      const out = {};
      rows.forEach(([k, v]) => { if (k.trim()) out[k.trim()] = v; });
      set(config, f.name, Object.keys(out).length ? out : undefined);
      ctx.changed(redraw);
    };
    rows.forEach((row, n) => {
      const key = el("input", {type: "text", name: `${path}.${n}.key`, value: row[0], placeholder: ctx.text.property, "aria-label": ctx.text.property});
      const val = el("input", {type: "text", name: `${path}.${n}.value`, value: row[1], placeholder: ctx.text.value, "aria-label": ctx.text.value});
      key.addEventListener("input", () => { row[0] = key.value; save(false); });
      val.addEventListener("input", () => { row[1] = val.value; save(false); });
      box.append(el("div", {class: "kf-row", "data-path": `${path}.${row[0]}`}, key, "=", val,
        el("button", {type: "button", onclick: () => { rows.splice(n, 1); save(true); }}, ctx.text.remove)));
    });
    box.append(el("button", {type: "button", onclick: () => { rows.push(["", ""]); ctx.changed(true); }}, ctx.text.addProperty));
    return box;
  }

  function list(f, config, path, ctx) {
    const items = Array.isArray(config[f.name]) ? config[f.name] : (config[f.name] = []);
    const box = el("div", {});
    items.forEach((item, n) => {
      box.append(el("div", {class: "kf-entry"},
        el("button", {type: "button", class: "kf-remove", onclick: () => { items.splice(n, 1); ctx.changed(true); }}, ctx.text.remove),
        fields(f.fields, item, `${path}.${n}`, ctx)));
    });
    box.append(el("button", {type: "button", onclick: () => {
      const item = {};
      f.fields.forEach((g) => { if (!empty(g.default)) item[g.name] = clone(g.default); });
      items.push(item);
      ctx.changed(true);
    }}, ctx.text.add));
    return box;
  }

  function showError(host, path, message) {
    let at = path.replace(/\[(\d+)\]/g, ".$1");
    let target = null;
    while (at && !(target = host.querySelector(`[data-path="${CSS.escape(at)}"]`))) {
      at = at.includes(".") ? at.slice(0, at.lastIndexOf(".")) : "";
    }
    target = target || host;
    const control = target.querySelector("input, select, textarea");
    if (control) {
      control.classList.add("kf-invalid");
      control.setAttribute("aria-invalid", "true");
    }
    target.append(el("p", {class: "kf-error", role: "alert"}, message));
  }

  function mount(container) {
    const name = container.dataset.name;
    const key = container.dataset.key || "";
    const many = container.hasAttribute("data-many");
    const documentNode = document.getElementById(container.dataset.document);
    const doc = JSON.parse(documentNode.textContent);
    const kinds = doc.kinds || [];
    const textarea = container.querySelector(`textarea[name="${CSS.escape(name)}"]`);
    const toggle = container.querySelector("[data-kf-json]");
    const lang = (document.documentElement.lang || "en").slice(0, 2);
    const text = lang === "ja"
      ? {add: "追加", remove: "削除", addProperty: "プロパティを追加", property: "プロパティ", value: "値", kind: "種類", invalid: "JSON が正しくありません。"}
      : {add: "Add", remove: "Remove", addProperty: "Add a property", property: "property", value: "value", kind: "Kind", invalid: "This is not valid JSON."};
    text.add = container.dataset.addLabel || text.add;
    const mode = el("input", {type: "hidden", name: `${name}.mode`, value: "form"});
    const form = el("div", {class: "kf-form"});
    container.insertBefore(mode, toggle.parentNode);
    container.insertBefore(form, toggle.parentNode);
    let state;
    let errorPath = container.dataset.errorPath || "";

    function representable(value) {
      if (many) return Array.isArray(value) && value.every((v) => isObject(v) && (!key || kinds.some((k) => k.name === v[key])));
      return isObject(value) && (Object.keys(value).length === 0 || !key || kinds.some((k) => k.name === value[key]));
    }

    function read() {
      const raw = textarea.value.trim();
      let value;
      try { value = raw ? JSON.parse(raw) : null; } catch (e) { return undefined; }
      if (value === null) value = many ? [] : {};  // a new campaign's field: "null" or empty
      if (!representable(value)) return undefined;
      if (!many && Object.keys(value).length === 0 && kinds.length) value = defaults(kinds[0], key);
      return value;
    }

    const ctx = {
      sources: doc.sources || {},
      registries: doc,
      kindLabel: text.kind,
      text,
      changed(redraw) {
        errorPath = "";
        textarea.value = JSON.stringify(state, null, 2);
        if (redraw) draw();
      },
    };

    function draw() {
      form.replaceChildren();
      if (many) {
        state.forEach((config, n) => {
          form.append(el("div", {class: "kf-entry", "data-path": `${name}.${n}`},
            el("button", {type: "button", class: "kf-remove", onclick: () => { state.splice(n, 1); ctx.changed(true); }}, text.remove),
            entry(kinds, key, config, `${name}.${n}`, ctx)));
        });
        form.append(el("button", {type: "button", "data-kf-add": true, onclick: () => {
          state.push(defaults(kinds[0], key));
          ctx.changed(true);
        }}, text.add));
      } else {
        form.append(el("div", {class: "kf-entry", "data-path": name}, entry(kinds, key, state, name, ctx)));
      }
      if (errorPath) showError(form, errorPath, container.dataset.errorMessage || "");
    }

    function setMode(json) {
      mode.value = json ? "json" : "form";
      toggle.checked = json;
      textarea.hidden = !json;
      form.hidden = json;
    }

    toggle.addEventListener("change", () => {
      if (toggle.checked) {
        if (state !== undefined) textarea.value = JSON.stringify(state, null, 2);
        setMode(true);
        return;
      }
      const value = read();
      const note = container.querySelector(".kf-json-error");
      if (note) note.remove();
      if (value === undefined) {
        toggle.checked = true;
        textarea.after(el("p", {class: "kf-error kf-json-error", role: "alert"}, text.invalid));
        return;
      }
      state = value;
      setMode(false);
      draw();
    });

    state = read();
    if (state === undefined) {
      setMode(true);
      if (errorPath) showError(container, "", container.dataset.errorMessage || "");
    } else {
      setMode(false);
      draw();
    }
  }

  window.KeepersKindForm = {mount, entry, defaults};
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-kind-form]").forEach(mount);
  });
})();
