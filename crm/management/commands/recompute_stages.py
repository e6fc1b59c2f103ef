from django.core.management.base import BaseCommand

from crm.management.commands._progress import ProgressLine
from crm.services.lifecycle import lifecycle_recompute_all


class Command(BaseCommand):
    help = "Recompute every contact's lifecycle stage now (what the nightly task does)."

    def handle(self, *args, **options):
        progress = ProgressLine(self.stderr, "Recomputing")
        changed = lifecycle_recompute_all(reason="manual recompute", progress=progress)
        progress.done()
        self.stdout.write(self.style.SUCCESS(f"{changed} contacts changed stage."))
