"""The sample event picker of the staff screens that render an email for a contact: the
template's preview and test send (campaigns.admin) and the broadcast's test send
(campaigns.admin_broadcasts). One form, so both offer the same samples and read typed
properties the same way; the event it stands for is `services.templates.preview_event`'s."""

from __future__ import annotations

from django import forms

from campaigns.services.templates import SAMPLES
from crm.models import Contact


class SampleEventForm(forms.Form):
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.all(),
        widget=forms.NumberInput,
        help_text="The contact id to render for (see the contact list)",
    )
    sample = forms.ChoiceField(
        required=False,
        choices=[("", "No event"), *((key, label) for key, (label, _) in SAMPLES.items())],
        help_text="Render as a send step would after this event of theirs (cart items, an "
        "order's products)",
    )
    event_name = forms.CharField(
        required=False, max_length=200, help_text="The event's name, for properties typed below"
    )
    properties = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Event properties, one “key = value” a line (e.g. coupon = WELCOME10); "
        "they replace the sample's own",
    )

    def clean_properties(self) -> dict:
        properties = {}
        for n, line in enumerate(self.cleaned_data["properties"].splitlines(), start=1):
            if not line.strip():
                continue
            key, equals, value = line.partition("=")
            if not equals or not key.strip():
                raise forms.ValidationError(f"Line {n} is not “key = value”.")
            properties[key.strip()] = value.strip()
        return properties
