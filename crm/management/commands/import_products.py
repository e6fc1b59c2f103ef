from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.management.commands._progress import ProgressLine
from crm.services.imports import products_import


class Command(BaseCommand):
    help = "Import the product catalog from CSV (product_id, name, url, image_url, price, currency, category, in_stock, replenishable)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        if not file.exists():
            raise CommandError(f"No such file: {file}")
        progress = ProgressLine(self.stderr, "Importing")
        try:
            report = products_import(
                file.read_bytes(), progress=lambda r: progress(r.processed_rows, r.total_rows)
            )
        except (KeepersError, UnicodeDecodeError) as error:
            raise CommandError(getattr(error, "message", str(error))) from None
        progress.done()
        for error in report.errors:
            self.stdout.write(f"line {error['row']}: {error['field'] or '-'}: {error['message']}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.created} created, {report.updated} updated, {report.error_count} rows with errors."
            )
        )
