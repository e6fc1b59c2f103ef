import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from campaigns.playbooks import playbooks_install
from crm.models import ApiKey
from crm.services.api_keys import api_key_create
from crm.services.demo import demo_metrics_seed, demo_seed
from loyalty.demo import loyalty_demo_install


class Command(BaseCommand):
    help = "Seed a believable demo shop (contacts in every stage, two years of orders, events) and an admin login. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=3000)
        parser.add_argument("--url", default=os.environ.get("KEEPERS_URL", "http://127.0.0.1:8000"))

    def handle(self, *args, contacts: int, url: str, **options):
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
        seeded = demo_seed(contacts=contacts, say=lambda m: self.stderr.write(f"  {m}"))
        if not seeded:
            self.stderr.write("Demo data is already there; nothing to add.")
        installed = playbooks_install()
        if installed:
            self.stderr.write(
                f"  {installed} playbooks published (welcome, browse and cart abandonment, "
                "post-purchase, win-back, birthday, re-engagement, back in stock, price drop, "
                "referral rewarded, NPS survey and its follow-ups) and a draft monthly newsletter"
            )
        loyalty_demo_install(say=lambda m: self.stderr.write(f"  {m}"))
        demo_metrics_seed(say=lambda m: self.stderr.write(f"  {m}"))
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
