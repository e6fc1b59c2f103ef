/* Keepers email builder: GrapesJS with grapesjs-mjml over a template's MJML field. The
   textarea stays the form's value: every change in the editor writes the MJML back to it,
   and it stays editable under "Advanced: MJML source" (a change there reloads the editor).
   What the editor offers comes from the document the server embeds (json_script, built
   by campaigns.widgets.EmailBuilderWidget from campaigns.email_blocks): Keepers' blocks as
   MJML snippets, the merge tags a send step's context has (a picker in the text toolbar,
   so nobody types {{ }}), the footer block that a marketing template keeps, and the words
   in the admin's language. Everything is served by the site: GrapesJS' icon font from the
   vendored copy, no canvas styles or scripts, no image placeholders from elsewhere. */
(function () {
  "use strict";
  const EMPTY = "<mjml><mj-body></mj-body></mjml>";

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
  const escapeHtml = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

  // GrapesJS reads MJML with the browser's HTML parser, where <mj-image … /> does not
  // close itself (it would swallow its siblings): void MJML tags are written out in full,
  // and tables' rows put where the parser leaves them alone (hideTables, below).
  const forParser = (mjml) => hideTables(hideHead(mjml)).replace(/<(mj-[a-z-]+)((?:\s+[^\s=>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*\/>/g, "<$1$2></$1>");

  // grapesjs-mjml writes an attribute back only when it differs from MJML's default
  // (13px for a text's size): written in the source, it matters there, where the
  // document's <mj-attributes> may set another. Keep what the source or the marketer
  // wrote.
  function keepWrittenAttributes(editor) {
    editor.Components.getTypes().forEach(({id, model}) => {
      const proto = model && model.prototype;
      if (!id.startsWith("mj-") || !proto || !proto.getAttrToHTML || proto.kpKeeps) return;
      const init = proto.init, attrsToHTML = proto.getAttrToHTML;
      proto.kpKeeps = true;
      proto.init = function (...args) {
        const written = new Set(Object.keys(this.get("attributes") || {}));
        const result = init.apply(this, args);
        this.kpWritten = written;
        this.on("change:attributes", () => {
          const before = this.previous("attributes") || {}, now = this.get("attributes") || {};
          Object.keys(now).forEach((key) => { if (now[key] !== before[key]) written.add(key); });
        });
        return result;
      };
      proto.getAttrToHTML = function (...args) {
        const out = attrsToHTML.apply(this, args);
        const all = this.get("attributes") || {};
        (this.kpWritten || []).forEach((key) => {
          if (!(key in out) && key !== "style" && key !== "id" && all[key] !== undefined && all[key] !== "") out[key] = all[key];
        });
        return out;
      };
    });
  }

  // <mj-table> holds HTML rows (and Django tags between them) that the browser's parser
  // would drop outside a <table>: its content travels as an attribute through the parser
  // and is written back verbatim; the canvas shows it in a table.
  const RAW = "data-kp-table";
  const hideTables = (mjml) => mjml.replace(/<mj-table\b([^>]*)>([\s\S]*?)<\/mj-table>/g,
    (all, attrs, inner) => `<mj-table${attrs} ${RAW}="${escapeHtml(inner)}"></mj-table>`);
  function tableType(editor) {
    editor.Components.addType("mj-table", {
      isComponent: (el) => el.tagName === "MJ-TABLE",
      model: {
        defaults: {tagName: "mj-table", draggable: '[data-gjs-type="mj-column"], [data-gjs-type="mj-hero"]', droppable: false, editable: false, name: "Table"},
        init() {
          const attrs = {...this.getAttributes()};
          this.set("raw", attrs[RAW] || "");
          delete attrs[RAW];
          this.setAttributes(attrs);
        },
        toHTML() {
          const attrs = Object.entries(this.getAttributes()).filter(([k]) => k !== "id")
            .map(([k, v]) => ` ${k}="${escapeHtml(String(v))}"`).join("");
          return `<mj-table${attrs}>${this.get("raw")}</mj-table>`;
        },
      },
      view: {
        tagName: "div",
        onRender() {
          // parsed inert first: an image whose address is a merge tag is not fetched
          const parsed = document.createElement("template");
          parsed.innerHTML = `<table width="100%">${this.model.get("raw")}</table>`;
          parsed.content.querySelectorAll("img").forEach((img) => {
            if (/\{[{%]/.test(img.getAttribute("src") || "")) img.setAttribute("src", this.em.get("kpPlaceholder") || "");
          });
          this.el.replaceChildren(parsed.content);
        },
      },
    });
  }

  // <mj-head> (mj-attributes, mj-title, mj-preview, mj-style) is not drawn: grapesjs-mjml
  // knows only some of its elements and would draw the rest as the email's content. It
  // travels through the parser as an attribute and is written back verbatim. (The canvas
  // compiles each part on its own, without the head: the document's mj-attributes, its
  // fonts and colours, show in the preview and the sent email, not in the canvas.)
  const HEAD = "data-kp-head";
  const hideHead = (mjml) => mjml.replace(/<mj-head\b[^>]*>([\s\S]*?)<\/mj-head>/,
    (all, inner) => `<mj-head ${HEAD}="${escapeHtml(inner)}"></mj-head>`);
  function headType(editor) {
    editor.Components.addType("mj-head", {
      isComponent: (el) => el.tagName === "MJ-HEAD",
      model: {
        defaults: {tagName: "mj-head", draggable: false, droppable: false, removable: false, copyable: false, selectable: false, hoverable: false, layerable: false},
        init() {
          const attrs = {...this.getAttributes()};
          this.set("raw", attrs[HEAD] || "");
          delete attrs[HEAD];
          this.setAttributes(attrs);
          this.components().reset();
        },
        toHTML() { return `<mj-head>${this.get("raw")}</mj-head>`; },
      },
      view: {tagName: "div", onRender() { this.el.hidden = true; }},
    });
  }

  // An image whose address is a merge tag ({{ shop.logo_url }}) has none yet: the canvas
  // shows the placeholder (the saved MJML keeps the tag).
  function placeholderImages(editor, placeholder) {
    editor.getModel().set("kpPlaceholder", placeholder);
    const type = editor.Components.getType("mj-image");
    const proto = type && type.model.prototype;
    if (!proto || !proto.getMjmlAttributes || proto.kpPlaceholder) return;
    const attributes = proto.getMjmlAttributes;
    proto.kpPlaceholder = true;
    proto.getMjmlAttributes = function (...args) {
      const result = {...attributes.apply(this, args)};
      if (/\{[{%]/.test(result.src || "")) result.src = placeholder;
      return result;
    };
  }

  function mount(root, data) {
    const say = (text) => (data.strings && data.strings[text]) || text;
    const textarea = root.querySelector("textarea");
    const form = textarea.form;
    const host = root.querySelector("[data-kpe-editor]");
    const source = root.querySelector("[data-kpe-source]");
    const bar = root.querySelector("[data-kpe-bar]");
    const row = root.closest(".form-row") || root;
    const format = form && form.elements.namedItem(data.format_field || "format");
    const category = form && form.elements.namedItem(data.category_field || "category");
    // the footer is known by its css-class (email_blocks.FOOTER_CLASS, kept in the MJML)
    const footerBlock = (data.blocks || []).find((b) => b.id === data.footer_block);
    const footerMjml = footerBlock ? forParser(footerBlock.mjml) : "";
    const footerClass = data.footer_class || "keepers-footer";
    let editor = null, writing = false;

    // --- shown only while the template is MJML (the format select), no reload -----------
    const isMjml = () => !format || format.value === "mjml";
    function toggle() {
      row.hidden = !isMjml();
      if (!isMjml()) return;
      if (!editor) start();
      else editor.refresh();
    }
    if (format) format.addEventListener("change", toggle);

    // --- the device buttons above the editor ----------------------------------------------
    const devices = [["desktop", say("Desktop")], ["mobile", say("Mobile (375 px)")]];
    const deviceButtons = devices.map(([id, label]) => el("button", {
      type: "button", class: "button kpe-device", "data-device": id, "aria-pressed": id === "desktop" ? "true" : "false",
      onclick: () => setDevice(id),
    }, label));
    bar.append(el("span", {class: "kpe-devices", role: "group", "aria-label": say("Preview on")}, deviceButtons));
    function setDevice(id) {
      if (editor) editor.setDevice(id);
      deviceButtons.forEach((b) => b.setAttribute("aria-pressed", b.dataset.device === id ? "true" : "false"));
      root.dataset.device = id;
    }

    // --- the footer a marketing template keeps --------------------------------------------
    const required = data.footer_required_for || ["marketing"];
    const marketing = () => !category || required.includes(category.value);
    // the email's body: <mj-attributes> in the head holds an <mj-body> too
    const body = () => editor.getWrapper().findType("mj-body").find((c) => !c.closestType("mj-head"));
    const isFooter = (c) => (` ${c.getAttributes()["css-class"] || ""} `).includes(` ${footerClass} `);
    function lock(component, locked) {
      component.set({removable: !locked, draggable: !locked, copyable: !locked});
      component.components().forEach((child) => lock(child, locked));
    }
    function guardFooter() {
      const mjBody = body();
      if (!mjBody || !footerMjml) return;
      let footer = mjBody.components().filter(isFooter)[0];
      if (!footer && marketing()) {
        footer = mjBody.append(footerMjml)[0];
      }
      mjBody.components().filter(isFooter).forEach((c) => lock(c, marketing()));
      // and closes the email: a block dropped below it goes above it
      const last = mjBody.components().at(mjBody.components().length - 1);
      if (footer && marketing() && last !== footer) footer.move(mjBody, {at: mjBody.components().length});
    }
    if (category) category.addEventListener("change", () => { if (editor) { guardFooter(); write(); } });

    // --- the MJML, both ways ----------------------------------------------------------------
    function write() {
      if (!editor) return;
      writing = true;
      textarea.value = editor.getHtml();
      textarea.dispatchEvent(new Event("input", {bubbles: true}));
      writing = false;
    }
    function load() {
      editor.setComponents(forParser(textarea.value.trim() || data.empty || EMPTY));
      guardFooter();
      write();
    }
    textarea.addEventListener("change", () => { if (editor && !writing) load(); });

    // --- the merge-tag picker in the text toolbar -------------------------------------------
    function mergeTagSelect() {
      const groups = new Map();
      (data.merge_tags || []).forEach((tag) => {
        const group = tag.group || "";
        if (!groups.has(group)) groups.set(group, []);
        groups.get(group).push(el("option", {value: tag.value}, tag.label));
      });
      const select = el("select", {class: "kpe-merge-tags", "aria-label": say("Insert a merge tag"), "data-kpe-merge-tags": true},
        el("option", {value: ""}, say("Merge tag…")));
      groups.forEach((options, group) => select.append(group ? el("optgroup", {label: group}, options) : options));
      return select;
    }

    // --- GrapesJS ---------------------------------------------------------------------------
    function start() {
      const plugin = window["grapesjs-mjml"];
      const mjml = (plugin && plugin.default) || plugin;
      const locale = data.locale || "en";
      editor = window.grapesjs.init({
        container: host,
        height: "720px",
        width: "auto",
        fromElement: false,
        components: EMPTY,
        storageManager: false,
        telemetry: false, // it would post to GrapesJS' servers
        // the panels' icon font, from the vendored copy (GrapesJS' default is a CDN)
        cssIcons: data.icons_css,
        canvas: {styles: [], scripts: []},
        // room above and below the sections, where any block can be dropped
        canvasCss: '[data-gjs-type="mj-body"] { min-height: 100vh; padding: 2rem 0 6rem; }',
        showDevices: false,
        deviceManager: {devices: [
          {id: "desktop", name: say("Desktop"), width: ""},
          {id: "mobile", name: say("Mobile (375 px)"), width: "375px", widthMedia: "480px"},
        ]},
        assetManager: {upload: false, assets: [], embedAsBase64: false},
        i18n: {locale, localeFallback: "en", detectLocale: false, messages: data.messages || {}},
        plugins: [mjml],
        pluginsOpts: {[mjml]: {
          // Keepers' blocks, then the plain layout pieces; none that load pictures from elsewhere
          blocks: ["mj-1-column", "mj-2-columns", "mj-3-columns", "mj-image", "mj-divider", "mj-spacer"],
          block: () => ({category: say("Layout")}),
          resetDevices: false,
          useCustomTheme: false, // it would add an inline <style> to the page
          imagePlaceholderSrc: data.image_placeholder,
          fonts: {},
        }},
      });
      keepWrittenAttributes(editor);
      tableType(editor);
      headType(editor);
      placeholderImages(editor, data.image_placeholder);
      editor.RichTextEditor.add("kp-merge-tag", {
        name: "kp-merge-tag",
        icon: mergeTagSelect(),
        attributes: {title: say("Insert a merge tag")},
        event: "change",
        result: (rte, action) => {
          const select = action.btn.querySelector("select");
          if (select.value) rte.insertHTML(escapeHtml(select.value));
          select.value = "";
        },
        update: (rte, action) => { action.btn.querySelector("select").value = ""; },
      });
      (data.blocks || []).forEach((block) => {
        editor.Blocks.add(block.id, {
          label: block.label,
          category: block.category,
          content: forParser(block.mjml),
          attributes: {"data-kp-block": block.id},
        });
      });
      editor.onReady(() => {
        const blocksButton = editor.Panels.getButton("views", "open-blocks");
        if (blocksButton) blocksButton.set("active", true); // the blocks first, not the styles
        load();
        setDevice(root.dataset.device || "desktop");
        editor.on("update", write);
        editor.on("block:drag:stop", () => { if (marketing()) guardFooter(); });
        root.dataset.ready = "true";
      });
    }

    // the last words typed in a text are the model's only when its editing ends
    if (form) form.addEventListener("submit", (event) => {
      if (!editor || !isMjml()) return;
      const editing = editor.getEditing && editor.getEditing();
      const view = editing && (editing.disableEditing ? editing : editing.view);
      if (!view || !view.disableEditing) { write(); return; }
      event.preventDefault();
      const submitter = event.submitter;
      Promise.resolve(view.disableEditing()).then(() => {
        write();
        form.requestSubmit(submitter || undefined);
      });
    });

    toggle();
    return {get editor() { return editor; }, write, load, setDevice};
  }

  window.KeepersEmailBuilder = {mount};

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-email-builder]").forEach((root) => {
      const doc = document.getElementById(root.dataset.document);
      root.kpEmailBuilder = mount(root, doc ? JSON.parse(doc.textContent) : {});
    });
  });
})();
