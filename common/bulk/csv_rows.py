"""The bulk-import file: CSV (RFC 4180, UTF-8, an optional BOM) whose first row is exactly the header
`username,email,initial_credits,notes`. The whole file is checked before anything is changed, and any problem
refuses the whole file: a file is fixed and sent again, never half imported because of what is in it.

What depends on the database (a username or email that an existing user holds) is not a file error: that row
alone is rejected by the importer and the others go in.

Rows are numbered as a spreadsheet numbers them: the header is row 1, the first user row 2 (a blank line is a
row too, and is skipped).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from common.logging import printable
from common.money import MAX_AMOUNT
from common.user_fields import Email, Username

HEADER = ("username", "email", "initial_credits", "notes")
#: More rows than this are refused (split the file): it bounds what one import holds and answers.
MAX_ROWS = 100_000
#: As grant-credits' notes.
MAX_NOTES_CHARS = 1000
#: A refusal lists at most this many problems (and says how many there were).
MAX_LISTED = 100
_CREDITS = re.compile(r"[0-9]+(\.[0-9]+)?")
_NEGATIVE = re.compile(r"-[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One user to import, checked."""

    row: int
    username: str
    email: str
    initial_credits: Decimal
    notes: str


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a row (0: the file as a whole) is refused."""

    row: int
    field: str
    message: str


class ImportFileRefused(Exception):
    """The file is refused whole; nothing was changed. Subclasses say why (the edge answers each with its own
    status)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.message = message
        self.problems = problems or []
        super().__init__(message)


class MalformedFile(ImportFileRefused):
    """Not a CSV file as this import reads one: its bytes, quoting, header or column count."""


class InvalidRows(ImportFileRefused):
    """A well-formed file with rows that break the rules: a username, email, credits or notes, or a username
    or email twice."""


class TooManyRows(ImportFileRefused):
    """More than MAX_ROWS user rows."""


class _Fields(BaseModel):
    """A row's text fields, checked by the very types create-user's body uses."""

    model_config = ConfigDict(strict=True, extra="forbid")
    username: Username
    email: Email
    notes: Annotated[str, StringConstraints(max_length=MAX_NOTES_CHARS)]


def parse_credits_cell(text: str) -> Decimal:
    """A cell of initial credits: a plain non-negative decimal with at most 4 places (1 credit = 1 cent, so
    0.0001 credit is 1/100 of a cent); no sign, exponent, separator or NaN. Raises ValueError saying why."""
    text = text.strip()
    if not text:
        raise ValueError("is required (0 for none)")
    if _NEGATIVE.fullmatch(text):
        raise ValueError("must not be negative")
    if not _CREDITS.fullmatch(text):
        raise ValueError("must be a plain number such as 100 or 12.5")
    amount = Decimal(text)
    if -amount.as_tuple().exponent > 4:  # type: ignore[operator]  # finite by the pattern: an int exponent
        raise ValueError("must have at most 4 decimal places (1 credit = 1 cent)")
    if amount > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    return amount


def _records(data: bytes) -> list[tuple[int, list[str]]]:
    """(row number, fields) for every record after the header, the header checked; blank lines left out."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedFile(f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    if "\x00" in text:
        raise MalformedFile("the file contains a NUL character")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise MalformedFile(f"the file is empty: its first row must be the header {','.join(HEADER)}")
        if tuple(name.strip() for name in header) != HEADER:
            found = printable(",".join(header), 120)
            raise MalformedFile(f"the first row must be the header {','.join(HEADER)} (found {found})")
        for number, fields in enumerate(reader, start=2):
            if fields:
                records.append((number, fields))
                if len(records) > MAX_ROWS:
                    raise TooManyRows(f"the file has more than {MAX_ROWS} user rows: split it")
    except csv.Error as exc:
        raise MalformedFile(f"the file is not valid CSV near line {reader.line_num}: {exc}") from None
    wrong = [Problem(number, "", f"has {len(fields)} columns, not {len(HEADER)}")
             for number, fields in records if len(fields) != len(HEADER)]
    if wrong:
        raise MalformedFile(_summary("row has the wrong number of columns", wrong), wrong[:MAX_LISTED])
    return records


def _summary(what: str, problems: list[Problem]) -> str:
    first = problems[0]
    where = f"row {first.row}" + (f" {first.field}" if first.field else "")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{len(problems)} {what}{'s' if len(problems) > 1 else ''}; {where}: {first.message}{more}"


def _field_problems(number: int, error: ValidationError) -> list[Problem]:
    """pydantic's reasons, without the input it echoes (a cell could hold anything, a key pasted by mistake)."""
    return [Problem(number, str(e["loc"][0]) if e["loc"] else "", e["msg"]) for e in error.errors()]


def parse_import(data: bytes) -> list[ImportRow]:
    """The file's rows, every one checked; raises an `ImportFileRefused` listing the problems otherwise."""
    rows: list[ImportRow] = []
    problems: list[Problem] = []
    first_of: dict[tuple[str, str], int] = {}
    for number, (username, email, credits, notes) in _records(data):
        try:
            fields = _Fields(username=username, email=email, notes=notes)
        except ValidationError as exc:
            problems += _field_problems(number, exc)
            fields = None
        try:
            amount: Decimal | None = parse_credits_cell(credits)
        except ValueError as exc:
            problems.append(Problem(number, "initial_credits", str(exc)))
            amount = None
        if fields is None:
            continue
        # Auth compares names case-insensitively, so two spellings of one name are one user.
        for name, value in (("username", fields.username), ("email", fields.email)):
            first = first_of.setdefault((name, value.lower()), number)
            if first != number:
                problems.append(Problem(number, name, f"duplicate of row {first}: each user must appear once"))
        if amount is not None:
            rows.append(ImportRow(number, fields.username, fields.email, amount, fields.notes))
    if problems:
        raise InvalidRows(_summary("invalid row field", problems), problems[:MAX_LISTED])
    return rows
