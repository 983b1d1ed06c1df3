"""Device registry CSV: one device per row, the columns are the fields of :class:`DeviceIn`.

Reading checks every row and reports every problem with its row number (the header is row 1, as
in a spreadsheet) and column, so a technician can fix a whole sheet in one pass; a caller imports
nothing when there is any problem. Files saved by spreadsheet programs are accepted: a UTF-8
byte-order mark is skipped and ``;`` is taken as the separator when the header uses it (the
default list separator of Indonesian-locale Excel). In such a ``;`` file a numeric cell may use
a decimal comma, as that locale writes numbers (``-5,1``): a cell of digits with exactly one comma
and no dot is read with the comma as the decimal point. Comma-separated files never get this, and
text columns are never touched.

Formula injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula (``=HYPERLINK(...)`` in a street name would
run when an officer opens the export). :func:`write_devices` writes such a text cell with a leading
``'`` (which spreadsheets show as "this is text" and hide), and :func:`read_devices` takes it off
again, so an export imports back unchanged. A text cell that itself starts with ``'`` followed by
one of those characters or another ``'`` gets one more ``'``, so that reversal is exact. Numeric
columns are written from numbers (``-5.13``) and left alone: a number is not a formula. Rows end
in CRLF (RFC 4180 section 2), so a carriage return inside a cell is quoted like a line feed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TextIO, get_args

from pydantic import ValidationError
from sqlalchemy.orm import Session

from devices.registry import DeviceIn, DeviceUpdate, add_device, update_device
from lorong.core.errors import RegistryError
from lorong.storage.tables import DeviceRow

COLUMNS: tuple[str, ...] = tuple(DeviceIn.model_fields)
"""CSV columns in export order; ``id`` and ``kind`` are required on import."""
REQUIRED = ("id", "kind")
NUMERIC: frozenset[str] = frozenset(
    name for name, f in DeviceIn.model_fields.items()
    if f.annotation in (int, float) or set(get_args(f.annotation)) & {int, float})
"""Columns whose cells are numbers (lat, lon, depth_mm, ..., report_interval_s)."""
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]+,[0-9]+")
FORMULA_START = frozenset("=+-@\t\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection")."""


def neutralize(cell: str) -> str:
    """``cell`` with a leading ``'`` when a spreadsheet would run it as a formula (module docstring).

    ``'=1+1`` (already escaped by hand) becomes ``''=1+1`` so that :func:`restore` gives it back.
    """
    if cell and (cell[0] in FORMULA_START or (cell[0] == "'" and cell[1:2] and cell[1] in FORMULA_START | {"'"})):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """The inverse of :func:`neutralize`: ``'=1+1`` -> ``=1+1``; ``'abc`` (not an escape) as it is."""
    if cell[:1] == "'" and cell[1:2] and cell[1] in FORMULA_START | {"'"}:
        return cell[1:]
    return cell


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a CSV file: row number (header = 1), column name and what is wrong."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}"


class CsvProblems(RegistryError):
    """A CSV file with problems; nothing from it may be imported.

    Attributes:
        problems: every problem found, in file order.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems[:5])
                         + (f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""))


def _dialect(first_line: str) -> str:
    return ";" if first_line.count(";") > first_line.count(",") else ","


def _decimal_point(record: dict[str, str]) -> dict[str, str]:
    """``record`` with each numeric cell written with a decimal comma (``-5,1``) rewritten to use a
    point; other cells, and numeric cells with more than one comma or any dot, as they are."""
    return {k: v.replace(",", ".") if k in NUMERIC and _DECIMAL_COMMA.fullmatch(v) else v
            for k, v in record.items()}


def read_devices(fh: TextIO) -> list[tuple[int, DeviceIn]]:
    """Parse and validate every row of a devices CSV.

    Empty cells take the field's default; blank lines are skipped. Duplicate ids within the file
    are problems. In a ``;``-separated file numeric cells may use a decimal comma (module doc).

    Returns:
        ``(row number, device)`` per data row, in file order (the header is row 1).

    Raises:
        CsvProblems: an unknown or missing column, a bad value, a duplicate id, an empty file.
    """
    devices, problems = _read(fh)
    if problems:
        raise CsvProblems(problems)
    return devices


def _read(fh: TextIO) -> tuple[list[tuple[int, DeviceIn]], list[Problem]]:
    """The valid rows and the problems of the other rows, as :func:`read_devices` describes.

    Raises:
        CsvProblems: the header is empty or names unknown columns or misses required ones (no
            row can be read then).
    """
    text = fh.read().removeprefix("\ufeff")
    delimiter = _dialect(text.split("\n", 1)[0])
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise CsvProblems([Problem(1, "-", "empty file: expected a header row")])
    reader.fieldnames = header
    problems = [Problem(1, h or "(blank)", f"unknown column; known columns: {', '.join(COLUMNS)}")
                for h in header if h not in COLUMNS]
    problems += [Problem(1, c, "required column missing") for c in REQUIRED if c not in header]
    if problems:
        raise CsvProblems(problems)
    devices: list[tuple[int, DeviceIn]] = []
    seen: dict[str, int] = {}
    for record in reader:
        row = reader.line_num
        if None in record:
            problems.append(Problem(row, "-", f"{len(header) + len(record[None])} cells, header has {len(header)}"))
            continue
        clean = {k: v.strip() if k in NUMERIC else restore(v.strip())
                 for k, v in record.items() if v is not None and v.strip() != ""}
        if not clean:
            continue  # a blank line left by a spreadsheet
        try:
            dev = DeviceIn.model_validate(_decimal_point(clean) if delimiter == ";" else clean)
        except ValidationError as exc:
            for err in exc.errors():
                column = str(err["loc"][0]) if err["loc"] else "-"
                shown = f" (got {clean[column]!r})" if column in clean else ""
                problems.append(Problem(row, column, err["msg"].removeprefix("Value error, ") + shown))
            continue
        if dev.id in seen:
            problems.append(Problem(row, "id", f"{dev.id} already appears in row {seen[dev.id]}"))
            continue
        seen[dev.id] = row
        devices.append((row, dev))
    return devices, problems


def import_devices(session: Session, fh: TextIO, update: bool = False) -> list[DeviceRow]:
    """Read a devices CSV and add every row (the caller commits; on any problem it must roll back).

    Args:
        session: registry session.
        fh: the CSV text.
        update: a row whose id is registered changes that device (the cells that are not empty,
            as :func:`devices.registry.update_device` would) instead of being a problem; a
            retired device still cannot change.

    Returns:
        the added and changed rows, in file order.

    Raises:
        CsvProblems: as :func:`read_devices`, plus ids already in the registry (without
            ``update``), or changes the registry refuses (retired device, depth not above the
            blind zone); all of them together, in row order.
    """
    devices, problems = _read(fh)
    out: list[DeviceRow] = []
    for row, d in devices:
        if session.get(DeviceRow, d.id) is None:
            try:
                out.append(add_device(session, d))
            except RegistryError as exc:  # its city is not registered
                problems.append(Problem(row, "city_id", str(exc)))
        elif not update:
            problems.append(Problem(row, "id", f"device {d.id} is already registered"))
        else:
            change = DeviceUpdate(**{f: getattr(d, f) for f in d.model_fields_set if f != "id"})
            try:
                out.append(update_device(session, d.id, change))
            except (RegistryError, ValueError) as exc:
                problems.append(Problem(row, "id", str(exc)))
    if problems:
        raise CsvProblems(sorted(problems, key=lambda p: p.row))
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def write_devices(rows: Iterable[DeviceRow], fh: TextIO) -> int:
    """Write registry rows as CSV (header :data:`COLUMNS`); returns the number of rows.

    Floats are written with Python's shortest round-trip repr and times as ISO 8601 with offset,
    so :func:`read_devices` gives back equal values. Text cells a spreadsheet would run as a
    formula get a leading ``'`` (:func:`neutralize`); rows end in CRLF (RFC 4180).
    """
    writer = csv.writer(fh, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    n = 0
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) if c in NUMERIC else neutralize(_cell(getattr(row, c)))
                         for c in COLUMNS])
        n += 1
    return n
