from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.services.privacy import contact_erase, contact_find


class Command(BaseCommand):
    help = (
        "Erase one contact (by id or email): their identifying data removed or replaced "
        "everywhere; orders, the ledger and the metrics keep anonymised rows. Asks for "
        "confirmation unless --yes."
    )

    def add_arguments(self, parser):
        parser.add_argument("contact", help="The contact's id or email address")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation")
        parser.add_argument("--by", default="", help="Who asked (kept in the log)")

    def handle(self, *args, contact: str, yes: bool, by: str, **options):
        try:
            found = contact_find(contact)
        except KeepersError as error:
            raise CommandError(error.message) from None
        if not yes:
            answer = input(f"Erase contact #{found.pk} ({found})? This cannot be undone. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Not erased.")
        contact_erase(contact=found, by=by or "manage.py contact_erase")
        self.stdout.write(f"Contact #{found.pk} erased.")
