import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from crm.models import ApiKey
from crm.services.api_keys import api_key_create
from crm.services.demo import DEMO_INSTALLERS, demo_catalog_load, demo_metrics_seed, demo_seed


class Command(BaseCommand):
    help = "Seed a believable demo shop (contacts in every stage, two years of orders, events) and an admin login. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=3000)
        parser.add_argument("--url", default=os.environ.get("KEEPERS_URL", "http://127.0.0.1:8000"))
        parser.add_argument(
            "--catalog-only",
            action="store_true",
            help="Load only the demo catalog (products): no contacts, orders or campaigns.",
        )

    def handle(self, *args, contacts: int, url: str, catalog_only: bool = False, **options):
        if catalog_only:
            count = demo_catalog_load()
            self.stdout.write(self.style.SUCCESS(f"{count} demo products in the catalog."))
            return
        username = os.environ.get("KEEPERS_DEMO_USER", "admin")
        password = os.environ.get("KEEPERS_DEMO_PASSWORD", "keepers-demo")
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"},
        )
        if created:
            user.set_password(password)
            user.save()

        def say(message: str) -> None:
            self.stderr.write(f"  {message}")

        seeded = demo_seed(contacts=contacts, say=say)
        if not seeded:
            self.stderr.write("Demo data is already there; nothing to add.")
        # each app's demo on top of crm's shop, lowest layer first (campaigns' playbooks,
        # then loyalty's programme); the figures last, over everything they seeded
        for installer in DEMO_INSTALLERS:
            installer(say)
        demo_metrics_seed(say=say)
        if not ApiKey.objects.filter(name="demo").exists():
            _key, raw = api_key_create(name="demo", scope="write", created_by=user)
            self.stdout.write(f"Demo API key (write scope, shown once): {raw}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Keepers admin: {url}/admin/  login: {username} / "
                f"{password if created or password == 'keepers-demo' else '(your password)'}"
            )
        )
        self.stdout.write(f"API docs: {url}/api/docs/")
