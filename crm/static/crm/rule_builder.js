/* Keepers segment rule builder: edits the JSON in the "rules" textarea through a form of
   groups (all / any / not) and conditions. No dependencies; raw JSON stays editable. */
(function () {
  "use strict";
  const STAGES = ["subscriber", "first_time", "repeat", "loyal", "at_risk", "lapsed", "unengaged"];
  const RFM_GROUPS = ["champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
    "about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost"];
  const FIELDS = ["stage", "email", "first_name", "last_name", "locale", "timezone", "source", "channel",
    "created_at", "birthday"];
  const TEMPLATES = {
    field: {type: "field", field: "stage", op: "in", value: ["repeat", "loyal"]},
    attribute: {type: "attribute", key: "plan", op: "eq", value: "gold"},
    tag: {type: "tag", op: "has", value: "vip"},
    consent: {type: "consent", op: "is", value: "granted"},
    event: {type: "event", name: "Product Viewed", op: "at_least", count: 1, days: 30},
    order: {type: "order", measure: "count", op: "gte", value: 2},
    bought: {type: "bought", category: "", op: "yes"},
    rfm: {type: "rfm", score: "group", op: "in", value: ["champions"]},
    clv: {type: "clv", measure: "probability_alive", op: "lt", value: 0.3},
    segment: {type: "segment", op: "member", segment: 1},
    meddic: {type: "meddic", op: "gte", value: 50},
  };
  const OPS = {
    field: ["eq", "neq", "in", "not_in", "contains", "starts_with", "exists", "gt", "gte", "lt", "lte",
      "within_last_days", "not_within_last_days", "birthday_in_next_days", "birthday_in_month"],
    attribute: ["eq", "neq", "in", "not_in", "contains", "exists", "gt", "gte", "lt", "lte", "within_last_days"],
    tag: ["has", "has_not"], consent: ["is", "is_not"], event: ["at_least", "at_most", "none"],
    order: ["gt", "gte", "lt", "lte", "eq", "neq", "within_last_days"], bought: ["yes", "no"],
    rfm: ["in", "not_in", "eq", "gte", "lte"], segment: ["member", "not_member"],
    meddic: ["gte", "gt", "lte", "lt", "eq"], clv: ["lt", "lte", "gt", "gte", "eq", "neq"],
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    });
    children.flat().forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(c)));
    return node;
  }

  function parseValue(text, previous) {
    if (Array.isArray(previous) || text.includes(",")) {
      return text.split(",").map((s) => s.trim()).filter(Boolean);
    }
    if (text === "true" || text === "false") return text === "true";
    if (text !== "" && !isNaN(Number(text)) && typeof previous === "number") return Number(text);
    return text;
  }

  function input(label, value, onchange, options) {
    const id = "rb-" + Math.random().toString(36).slice(2);
    let control;
    if (options) {
      control = el("select", {id, onchange: (e) => onchange(e.target.value)},
        options.map((o) => { const opt = el("option", {value: o}, o); if (o === value) opt.selected = true; return opt; }));
    } else {
      const shown = Array.isArray(value) ? value.join(", ") : (value === undefined ? "" : String(value));
      control = el("input", {id, value: shown, size: 18, onchange: (e) => onchange(e.target.value)});
    }
    return el("span", {class: "rb-input"}, el("label", {for: id}, label + " "), control);
  }

  function render(node, update, remove) {
    const box = el("div", {class: "rb-node"});
    const group = ["all", "any", "not"].find((k) => k in node);
    if (group) {
      const kind = input("Match", group, (g) => {
        const children = group === "not" ? [node.not] : node[group];
        update(g === "not" ? {not: children[0]} : {[g]: children});
      }, ["all", "any", "not"]);
      box.append(el("div", {class: "rb-head"}, kind,
        remove ? el("button", {type: "button", onclick: remove, "aria-label": "Remove group"}, "✕") : ""));
      const children = group === "not" ? [node.not] : node[group];
      children.forEach((child, i) => box.append(render(child, (c) => {
        const copy = children.slice(); copy[i] = c;
        update(group === "not" ? {not: copy[0]} : {[group]: copy});
      }, group === "not" ? null : () => {
        const copy = children.slice(); copy.splice(i, 1);
        if (copy.length) update({[group]: copy});
      })));
      if (group !== "not") {
        const add = el("select", {"aria-label": "Add a condition", onchange: (e) => {
          if (!e.target.value) return;
          const item = e.target.value === "group" ? {all: [structuredClone(TEMPLATES.field)]}
            : structuredClone(TEMPLATES[e.target.value]);
          update({[group]: children.concat([item])});
        }}, el("option", {value: ""}, "+ add…"), el("option", {value: "group"}, "group"),
          Object.keys(TEMPLATES).map((t) => el("option", {value: t}, t + " condition")));
        box.append(add);
      }
      return box;
    }
    const set = (key) => (raw) => update({...node, [key]: key === "count" || key === "days" || key === "segment"
      ? Number(raw) : (key === "value" ? parseValue(raw, node.value) : raw)});
    const row = [input("Type", node.type, (t) => update(structuredClone(TEMPLATES[t])), Object.keys(TEMPLATES))];
    if (node.type === "field") row.push(input("Field", node.field, set("field"), FIELDS));
    if (node.type === "attribute") row.push(input("Key", node.key, set("key")));
    if (node.type === "event") row.push(input("Event", node.name, set("name")));
    if (node.type === "order") row.push(input("Measure", node.measure, set("measure"),
      ["count", "total_spend", "average_order_value", "spend_last_days", "first_order_at", "last_order_at"]));
    if (node.type === "clv") row.push(input("Measure", node.measure, set("measure"),
      ["probability_alive", "predicted_clv", "expected_purchases_30d", "expected_purchases_90d",
        "expected_purchases_365d", "expected_spend", "historic_clv"]));
    if (node.type === "rfm") row.push(input("Score", node.score, set("score"), ["group", "recency", "frequency", "monetary"]));
    if (node.type === "bought") row.push(input("Category", node.category, set("category")),
      input("or product id", node.product_id, set("product_id")));
    row.push(input("Operator", node.op, set("op"), OPS[node.type] || []));
    if (node.type === "event") {
      if (node.op !== "none") row.push(input("Times", node.count, set("count")));
      row.push(input("In last days", node.days, set("days")));
    }
    if (node.type === "segment") row.push(input("Segment id", node.segment, set("segment")));
    else if (!(node.type === "bought" || node.type === "event")) {
      const hint = node.type === "field" && node.field === "stage" ? " (" + STAGES.join(", ") + ")"
        : node.type === "rfm" && node.score === "group" ? " (" + RFM_GROUPS.join(", ") + ")" : "";
      row.push(input("Value" + hint, node.value, set("value")));
    }
    if (node.type === "order" && node.measure === "spend_last_days") row.push(input("Days", node.days, set("days")));
    box.append(el("div", {class: "rb-row"}, row,
      remove ? el("button", {type: "button", onclick: remove, "aria-label": "Remove condition"}, "✕") : ""));
    return box;
  }

  function mount(textarea) {
    const host = el("div", {class: "rb", "aria-label": "Rule builder"});
    textarea.parentNode.insertBefore(host, textarea);
    const redraw = () => {
      host.replaceChildren();
      let rules;
      try { rules = JSON.parse(textarea.value || "{}"); } catch (e) {
        host.append(el("p", {class: "errornote"}, "The JSON below is not valid; fix it or clear it to use the builder."));
        return;
      }
      if (!rules || !Object.keys(rules).length) rules = {all: [structuredClone(TEMPLATES.field)]};
      host.append(render(rules, (next) => { textarea.value = JSON.stringify(next, null, 2); redraw(); }));
    };
    textarea.addEventListener("change", redraw);
    redraw();
  }

  async function preview(button) {
    const out = document.getElementById("rb-preview");
    const rules = document.getElementById("id_rules").value;
    out.textContent = "Counting…";
    const body = new FormData();
    body.append("rules", rules);
    body.append("csrfmiddlewaretoken", document.querySelector("[name=csrfmiddlewaretoken]").value);
    const response = await fetch(button.dataset.url, {method: "POST", body, credentials: "same-origin"});
    const data = await response.json();
    out.replaceChildren();
    if (!response.ok) { out.append(el("p", {class: "errornote"}, data.message)); return; }
    out.append(el("p", {}, el("strong", {}, data.count.toLocaleString()), " contacts match now. Sample:"),
      el("ul", {}, data.sample.map((c) => el("li", {}, el("a", {href: c.url}, c.label), " — " + c.stage))));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const textarea = document.getElementById("id_rules");
    if (textarea && !textarea.disabled) mount(textarea);
    const button = document.getElementById("rb-preview-button");
    if (button) button.addEventListener("click", () => preview(button));
  });
})();
