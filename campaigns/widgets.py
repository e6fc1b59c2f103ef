"""Form widgets of the campaigns admin.

`EmailBuilderWidget` edits a template's MJML body with the drag-and-drop block editor
(GrapesJS with grapesjs-mjml, vendored in static/campaigns/vendor/grapesjs, drawn by
static/campaigns/email_builder.js). The textarea stays the field's value; the script
writes the editor's MJML into it on every change. What the editor offers comes from
`email_builder_document()`, embedded in the page (json_script): the blocks and merge
tags of campaigns.email_blocks, and the editor's words in the admin's language."""

from __future__ import annotations

from django import forms
from django.templatetags.static import static
from django.utils.translation import get_language, gettext, gettext_noop

from campaigns.email_blocks import FOOTER_CLASS, blocks, merge_tags, mjml_document

# The builder's own words (email_builder.js `say`).
BUILDER_STRINGS = (
    gettext_noop("Desktop"),
    gettext_noop("Mobile (375 px)"),
    gettext_noop("Preview on"),
    gettext_noop("Insert a merge tag"),
    gettext_noop("Merge tag…"),
    gettext_noop("Layout"),
)

# GrapesJS' and grapesjs-mjml's words that a marketer sees, keyed as their i18n modules
# want them (grapesjs/locale/en.js, grapesjs-mjml/locale/en.js); English is their own.
GRAPESJS_WORDS: dict = {
    "assetManager": {
        "addButton": gettext_noop("Add image"),
        "modalTitle": gettext_noop("Select image"),
        "uploadTitle": gettext_noop("Drop files here or click to upload"),
    },
    "domComponents": {
        "names": {
            "": gettext_noop("Box"),
            "wrapper": gettext_noop("Body"),
            "text": gettext_noop("Text"),
            "image": gettext_noop("Image"),
            "link": gettext_noop("Link"),
        }
    },
    "panels": {
        "buttons": {
            "titles": {
                "preview": gettext_noop("Preview"),
                "fullscreen": gettext_noop("Full screen"),
                "sw-visibility": gettext_noop("Show outlines"),
                "export-template": gettext_noop("View code"),
                "open-sm": gettext_noop("Style"),
                "open-tm": gettext_noop("Settings"),
                "open-layers": gettext_noop("Layers"),
                "open-blocks": gettext_noop("Blocks"),
            }
        }
    },
    "styleManager": {
        "empty": gettext_noop("Select an element to change its style"),
        "sectors": {
            "Dimension": gettext_noop("Size and spacing"),
            "Typography": gettext_noop("Typography"),
            "Decorations": gettext_noop("Decorations"),
        },
        "properties": {
            "width": gettext_noop("Width"),
            "height": gettext_noop("Height"),
            "max-width": gettext_noop("Maximum width"),
            "min-height": gettext_noop("Minimum height"),
            "margin": gettext_noop("Margin"),
            "padding": gettext_noop("Padding"),
            "vertical-align": gettext_noop("Vertical alignment"),
            "font-family": gettext_noop("Font"),
            "font-size": gettext_noop("Font size"),
            "font-weight": gettext_noop("Font weight"),
            "letter-spacing": gettext_noop("Letter spacing"),
            "color": gettext_noop("Font color"),
            "line-height": gettext_noop("Line height"),
            "text-align": gettext_noop("Text alignment"),
            "align": gettext_noop("Alignment"),
            "text-decoration": gettext_noop("Decoration"),
            "font-style": gettext_noop("Font style"),
            "background-color": gettext_noop("Background color"),
            "container-background-color": gettext_noop("Background color"),
            "background-url": gettext_noop("Background image"),
            "background-repeat": gettext_noop("Background repeat"),
            "background-size": gettext_noop("Background size"),
            "border-radius": gettext_noop("Corner radius"),
            "border": gettext_noop("Border"),
        },
    },
    "traitManager": {
        "empty": gettext_noop("Select an element to change its settings"),
        "label": gettext_noop("Settings"),
        "traits": {
            "labels": {
                "href": gettext_noop("Link"),
                "alt": gettext_noop("Alternative text"),
                "title": gettext_noop("Title"),
                "src": gettext_noop("Image URL"),
                "rel": gettext_noop("Link relation"),
            }
        },
    },
    "grapesjs-mjml": {
        "panels": {
            "buttons": {
                "undo": gettext_noop("Undo"),
                "redo": gettext_noop("Redo"),
                "import": gettext_noop("Import MJML"),
            },
            "import": {"title": gettext_noop("Import MJML"), "button": gettext_noop("Import")},
            "export": {"title": gettext_noop("Export MJML")},
        },
        "components": {
            "names": {
                "body": gettext_noop("Body"),
                "button": gettext_noop("Button"),
                "column": gettext_noop("Column"),
                "oneColumn": gettext_noop("1 column"),
                "twoColumn": gettext_noop("2 columns"),
                "threeColumn": gettext_noop("3 columns"),
                "divider": gettext_noop("Divider"),
                "group": gettext_noop("Group"),
                "hero": gettext_noop("Hero"),
                "image": gettext_noop("Image"),
                "section": gettext_noop("Section"),
                "spacer": gettext_noop("Spacer"),
                "text": gettext_noop("Text"),
                "wrapper": gettext_noop("Wrapper"),
                "raw": gettext_noop("Template code"),
            }
        },
    },
}


def _translated(words):
    if isinstance(words, dict):
        return {key: _translated(value) for key, value in words.items()}
    return gettext(words)


def email_builder_document() -> dict:
    """What the editor embeds, in the active language: the blocks (the one with
    `required_for` is the footer a template of those categories keeps), the merge tags,
    GrapesJS' words for this language (none for English: its own), the builder's."""
    language = (get_language() or "en").split("-")[0]
    keepers_blocks = blocks()
    footer = next((b for b in keepers_blocks if b.get("required_for")), None)
    return {
        "locale": language,
        "blocks": keepers_blocks,
        "merge_tags": merge_tags(),
        # a new template starts with the shop's look (fonts, colours: mj-attributes)
        "empty": mjml_document(""),
        "footer_block": footer["id"] if footer else "",
        "footer_class": FOOTER_CLASS,
        "footer_required_for": footer.get("required_for", []) if footer else [],
        "messages": {} if language == "en" else {language: _translated(GRAPESJS_WORDS)},
        "strings": {text: gettext(text) for text in BUILDER_STRINGS},
        "icons_css": static("campaigns/vendor/grapesjs/font-awesome/css/font-awesome.min.css"),
        "image_placeholder": static("campaigns/email_builder_image.svg"),
    }


class EmailBuilderWidget(forms.Textarea):
    """A textarea holding MJML, with the block editor drawn over it while the form's
    `format` field says MJML; the textarea stays under "Advanced: MJML source"."""

    template_name = "admin/campaigns/emailtemplate/email_builder_widget.html"

    class Media:
        js = [
            "campaigns/vendor/grapesjs/grapes.min.js",
            "campaigns/vendor/grapesjs/grapesjs-mjml.min.js",
            "campaigns/email_builder.js",
        ]
        css = {"all": ["campaigns/vendor/grapesjs/grapes.min.css", "campaigns/email_builder.css"]}

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__({"rows": 16, "cols": 90, **(attrs or {})})

    def value_from_datadict(self, data, files, name):
        # a browser posts a textarea's lines ended with CRLF, and mrml refuses a "\r" in
        # places (inside <mj-table>): the MJML is stored with the editor's "\n"
        value = super().value_from_datadict(data, files, name)
        return value.replace("\r\n", "\n") if isinstance(value, str) else value

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"].update(
            document=email_builder_document(),
            document_id=f"{context['widget']['attrs'].get('id') or name}-builder",
        )
        return context
