from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.services.privacy import contact_export_json, contact_find


class Command(BaseCommand):
    help = (
        "Export everything Keepers holds about one contact (by id or email) as one JSON "
        "document: to standard output, or to --output FILE."
    )

    def add_arguments(self, parser):
        parser.add_argument("contact", help="The contact's id or email address")
        parser.add_argument("--output", "-o", help="Write the document to this file")

    def handle(self, *args, contact: str, output: str | None, **options):
        try:
            found = contact_find(contact)
        except KeepersError as error:
            raise CommandError(error.message) from None
        document = contact_export_json(contact=found)
        if output:
            Path(output).write_text(document, encoding="utf-8")
            self.stderr.write(f"Contact #{found.pk} exported to {output}.")
        else:
            self.stdout.write(document)
