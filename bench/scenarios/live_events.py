"""The ``live_events`` scenario's table rows: measured with ``pipeline`` (one run)."""

from bench.scenarios.pipeline import live_notes as notes
from bench.scenarios.pipeline import live_rows as rows

__all__ = ["notes", "rows"]
