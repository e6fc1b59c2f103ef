from django.core.management.base import BaseCommand

from crm.services.roles import ROLES, roles_sync


class Command(BaseCommand):
    help = (
        "Create or update the staff roles (groups marketer, analyst, support, admin) with "
        "their documented permissions. migrate runs it too; it is safe to run again."
    )

    def handle(self, *args, **options):
        for name, count in roles_sync().items():
            self.stdout.write(f"{name}: {count} permissions ({ROLES[name].summary})")
        self.stdout.write(self.style.SUCCESS("Roles are up to date."))
