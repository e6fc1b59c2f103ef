from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.models import ApiScope
from crm.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", choices=ApiScope.values, default=ApiScope.READ)

    def handle(self, *args, name: str, scope: str, **options):
        try:
            key, raw = api_key_create(name=name, scope=scope)
        except KeepersError as error:
            raise CommandError(error.message) from None
        self.stderr.write(
            f"Created {scope} key '{key.name}' ({key.prefix}…). Store it now; it is not shown again."
        )
        self.stdout.write(raw)
