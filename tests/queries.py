"""Query-count bounds that hold on both databases the tests run on."""

from __future__ import annotations

import math

from django.db import connection


def split_inserts(rows: int, columns: int) -> int:
    """The statements one bulk_create of `rows` rows of `columns` columns takes beyond the
    first: none on PostgreSQL; on SQLite Django splits it to stay under 999 parameters."""
    if connection.vendor == "postgresql" or not rows:
        return 0
    return math.ceil(rows / (connection.features.max_query_params // columns)) - 1
