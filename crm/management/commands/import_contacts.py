from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.management.commands._progress import ProgressLine
from crm.services.imports import contacts_import


class Command(BaseCommand):
    help = (
        "Import contacts from a CSV file (header row; email and/or external_id, first_name, "
        "last_name, phone, locale, timezone, birthday, tags, source, channel, consent; other "
        "columns become attributes). Prints progress, then each bad row by line and field."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", default="import", help="acquisition source to record")

    def handle(self, *args, file: Path, source: str, **options):
        if not file.exists():
            raise CommandError(f"No such file: {file}")
        progress = ProgressLine(self.stderr, "Importing")
        try:
            report = contacts_import(
                file.read_bytes(),
                source=source,
                progress=lambda r: progress(
                    r.processed_rows,
                    r.total_rows,
                    f"{r.created} new, {r.updated} updated, {r.error_count} errors",
                ),
            )
        except (KeepersError, UnicodeDecodeError) as error:
            raise CommandError(getattr(error, "message", str(error))) from None
        progress.done()
        for error in report.errors:
            self.stdout.write(f"line {error['row']}: {error['field'] or '-'}: {error['message']}")
        if report.error_count > len(report.errors):
            self.stdout.write(f"… and {report.error_count - len(report.errors)} more errors")
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.created} created, {report.updated} updated, "
                f"{report.error_count} rows with errors, of {report.total_rows} rows."
            )
        )
