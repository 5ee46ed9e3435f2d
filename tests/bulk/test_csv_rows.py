"""The import file's rules, on the parser itself (no stack): what a spreadsheet saves is read as it means it,
and every kind of bad file is refused whole, naming the row and the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.bulk.csv_rows import (
    HEADER,
    MAX_ROWS,
    ImportRow,
    InvalidRows,
    MalformedFile,
    Problem,
    TooManyRows,
    parse_credits_cell,
    parse_import,
)

TOP = ",".join(HEADER)


def test_a_spreadsheets_file_is_read_as_it_means() -> None:
    data = ("\ufeff" + TOP + "\r\n"                       # Excel's BOM, CRLF
            + "ann_1, ann@example.com ,100,\r\n"          # spaces around a field are dropped
            + "\r\n"                                      # a blank row is skipped (and still numbered)
            + '"bob_2",bob@example.com,12.5,"two\r\nlines, and a comma"\r\n'
            + "cid_3,cid@example.com,0.0001,\n").encode()  # LF line ends too
    assert parse_import(data) == [
        ImportRow(2, "ann_1", "ann@example.com", Decimal(100), ""),
        ImportRow(4, "bob_2", "bob@example.com", Decimal("12.5"), "two\r\nlines, and a comma"),
        ImportRow(5, "cid_3", "cid@example.com", Decimal("0.0001"), ""),  # a record, not a line: row 5
    ]
    assert parse_import((TOP + "\n").encode()) == []  # a header alone: nothing to do


@pytest.mark.parametrize(("cell", "amount"), [("0", 0), ("100", 100), (" 7 ", 7), ("12.3456", Decimal("12.3456")),
                                              ("100000000", 100_000_000), ("1.50", Decimal("1.5"))])
def test_credits_cells_that_are_read(cell: str, amount: Decimal) -> None:
    assert parse_credits_cell(cell) == amount


@pytest.mark.parametrize(("cell", "says"), [
    ("-1", "must not be negative"), ("-0.5", "must not be negative"), ("", "is required"),
    ("ten", "plain number"), ("1e3", "plain number"), ("+5", "plain number"), ("1,000", "plain number"),
    ("1_000", "plain number"), ("NaN", "plain number"), ("Infinity", "plain number"), (".5", "plain number"),
    ("1.00001", "at most 4 decimal places"), ("100000000.0001", "at most 100000000"),
])
def test_credits_cells_that_are_refused(cell: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_credits_cell(cell)


def test_every_problem_is_listed_with_its_row_and_field() -> None:
    data = (TOP + "\n" + "ok_1,ok@example.com,1,\n" + "x,bad-email,-2," + "n" * 1001 + "\n"
            + "Ok_1,other@example.com,1,\n").encode()
    with pytest.raises(InvalidRows) as refused:
        parse_import(data)
    assert refused.value.problems == [
        Problem(3, "username", "String should match pattern '^[A-Za-z0-9_.-]{3,64}$'"),
        Problem(3, "email", "String should match pattern '^[^@\\s]{1,64}@[^@\\s]+\\.[^@\\s]{2,}$'"),
        Problem(3, "notes", "String should have at most 1000 characters"),
        Problem(3, "initial_credits", "must not be negative"),
        Problem(4, "username", "duplicate of row 2: each user must appear once"),
    ]
    assert refused.value.message.startswith("5 invalid row fields; row 3 username:")


@pytest.mark.parametrize(("data", "says"), [
    (b"", "the file is empty"),
    (b"\n", "the first row must be the header"),
    (b"username,email,initial_credits\n", "the first row must be the header"),
    (b"username,email,credits,notes\n", "the first row must be the header"),
    (b"Username,Email,Initial_Credits,Notes\n", "the first row must be the header"),
    (TOP.encode() + b"\nann_1,ann@example.com,1,\xe9\n", "not UTF-8"),
    (TOP.encode() + b"\nann_1,ann@example.com,1,\x00\n", "NUL"),
    (TOP.encode() + b'\nann_1,ann@example.com,1,"open\n', "not valid CSV"),
    (TOP.encode() + b'\nann_1,ann@example.com,1,"a"b\n', "not valid CSV"),
    (TOP.encode() + b"\nann_1,ann@example.com,1\n", "row 2: has 3 columns, not 4"),
])
def test_malformed_files_are_refused_whole(data: bytes, says: str) -> None:
    with pytest.raises(MalformedFile, match=says):
        parse_import(data)


def test_a_file_with_too_many_rows_is_refused() -> None:
    rows = "".join(f"u_{i},u_{i}@example.com,1,\n" for i in range(MAX_ROWS + 1))
    with pytest.raises(TooManyRows, match=f"more than {MAX_ROWS}"):
        parse_import((TOP + "\n" + rows).encode())
