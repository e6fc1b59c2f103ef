"""`manage.py import_orders FILE.csv`: see crm/services/order_imports.py."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm.errors import KeepersError
from crm.management.commands._progress import ProgressLine
from crm.services.lifecycle import lifecycle_recompute_all
from crm.services.order_imports import (
    BATCH_SIZE,
    OrderImportReport,
    count_lines,
    orders_import_file,
)
from crm.services.parsing import parse_str
from crm.services.rfm import rfm_recompute


class Command(BaseCommand):
    help = (
        "Import orders from a CSV file with the columns external_id, contact_external_id, "
        "contact_email, ordered_at, total, currency (unknown contacts are created; orders "
        "already stored are skipped). Progress on stderr; bad rows go to an error report."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--errors",
            type=Path,
            help="where to write the error report (default: FILE.errors.csv beside the file)",
        )
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
        parser.add_argument("--source", default="import", help="source recorded on the orders")
        parser.add_argument(
            "--recompute",
            action="store_true",
            help="recompute every contact's stage and the RFM scores once at the end",
        )

    def handle(self, *args, file: Path, errors: Path | None, batch_size: int, **options):
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        if not 1 <= batch_size <= 50_000:
            raise CommandError("--batch-size is from 1 to 50000.")
        source = parse_str(options["source"], "source", max_length=100) or "import"
        errors_path = errors or file.with_name(f"{file.stem}.errors.csv")
        total = count_lines(file)
        line = ProgressLine(self.stderr, "Importing orders")

        def progress(report: OrderImportReport) -> None:
            line(
                report.rows,
                max(total, report.rows),
                f"{report.created:,} new, {report.skipped:,} skipped, {report.errors:,} errors",
            )

        try:
            with open(errors_path, "w", newline="", encoding="utf-8") as errors_to:
                report = orders_import_file(
                    file,
                    errors_to=errors_to,
                    batch_size=batch_size,
                    source=source,
                    progress=progress,
                )
        except KeepersError as error:
            raise CommandError(error.message) from None
        except UnicodeDecodeError as error:
            raise CommandError(f"The file is not UTF-8 text: {error}") from None
        except csv.Error as error:
            raise CommandError(f"The file is not valid CSV: {error}") from None
        line.done()
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.created} orders created, {report.skipped} skipped (already stored "
                f"or repeated), {report.errors} rows with errors, {report.contacts_created} "
                f"contacts created; {report.rows} rows in {report.seconds:.1f} s "
                f"({report.rate:,.0f} rows/s)."
            )
        )
        self.stdout.write(f"Error report: {errors_path}")
        if options["recompute"]:
            self._recompute()
        elif report.created:
            self.stdout.write(
                "Stages were not recomputed: run `manage.py recompute_stages` "
                "(or import with --recompute); RFM scores and the CLV fit follow nightly."
            )

    def _recompute(self) -> None:

        line = ProgressLine(self.stderr, "Recomputing stages")
        changed = lifecycle_recompute_all(reason="orders imported", progress=line)
        line.done()
        scored = rfm_recompute()
        self.stdout.write(f"{changed} contacts changed stage; {scored} customers RFM-scored.")
