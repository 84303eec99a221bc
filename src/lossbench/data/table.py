"""Delimited tables (CSV, TSV, whitespace-separated) and Excel sheets as classification datasets.

One loader, ``load_table``, for numeric and mixed tables, with or without a header; it
follows the reading and feature rules of the EXACT paper's UCI loader (Karpukhin et al. 2022,
arXiv 2205.09615; ``uci-class/src/uci_class/uci.py`` and ``scripts/run.py`` of
github.com/ivan-chai/exact), so that the ten UCI sets of its Table 1 are registered datasets
read through it (``catalog.py``, names ``uci-*``), and your own tables get the same treatment.

Reading (pandas):

- ``.xls`` / ``.xlsx`` / ``.xlsm`` go through ``pandas.read_excel`` (``sheet``: name or
  0-based index; ``.xls`` needs xlrd, ``.xlsx`` openpyxl); anything else is text, gzip/bzip2
  read transparently, decoded as ``encoding`` (UTF-8 by default, a BOM dropped; a file starting
  with a UTF-16 or UTF-32 byte-order mark, as Excel's "Unicode text", is read as such; other bytes
  are an error naming the file and line: pass ``encoding="latin-1"`` for old files).
- ``sep=None`` picks the delimiter: tab for ``.tsv``/``.tab``, comma for ``.csv``, otherwise
  comma if the first data line holds one, else tab if it holds one, else runs of whitespace; a
  first line with semicolons and no comma or tab is read with ``;`` (the CSV of decimal-comma
  locales) in a ``.csv``, and elsewhere where it holds no space either.
  ``sep="whitespace"`` asks for the latter.  A first line ``sep=X`` (the delimiter line Excel
  reads and some tools write) is no row: it names the delimiter where ``sep`` is None.
  Double quotes quote fields as pandas reads them: a quote opens one only at a field's start (``12" screen``
  is text); a ``sep`` of more than one character other than whitespace is a regular expression that pandas
  splits lines with, quotes and all, so there no quote rule applies.  A quoted field may span lines (a cell,
  delimiters and all); a row whose quoted field does is refused where a strict (RFC 4180) reading fails, a
  closing quote followed by neither the delimiter nor the line end (``"Awful" indeed``: rows a stray quote
  merged), naming the line where that quote opens, and where it has another number of fields than the first
  row, naming its line.  A quote never closed is an error naming its line.  Rows that a stray quote merged
  into one strictly valid row of the right width cannot be told from a multi-line cell: they load as one.
  ``decimal=","`` reads numbers written ``1,5`` (text files); without it they are text, so that no
  header is found: the error that says so points to ``sep=";", decimal=","`` when the first line
  holds semicolons and no comma.
- Blank lines are skipped, and so are lines starting with ``comment`` when it is given (but for
  lines inside a quoted field).
- ``header=None`` guesses: the first row is a header when none of its fields is missing (its
  first may be empty: see below), one of pandas' missing spellings (``NA``, ``null``, ...) or a number
  with decimals, and some column holds a name with a letter or digit there (``.``, ``-`` are a data row's
  placeholders) and only numbers below it (all-nominal files are therefore read as headerless: pass ``header=True``),
  or its fields are ``0, 1, 2, ...`` (pandas' ``to_csv`` of an array; two columns ``0,1`` only over numbers
  with decimals), or its numbers are integers that count up by one (``0,1,label``; years)
  and no row below repeats its other fields in their columns; a
  ``test_path`` is read with the training file's guess.  ``True`` / ``False`` say it.  A guessed header
  that names a column by a number and whose label column's name is a token like the labels below it
  (``a,2,z`` over ``x``, ``y``) is warned of, and so is a header guessed from its integers alone (``0,1,2,3``)
  whose label column's name is also a label below, as a number (``3``, ``3.0``): a headerless file's first
  row may be data (``header=False``).
  A header read as data is refused: with a header, a row that repeats it (a repeated header line: its label
  the label column's name and every other cell its column's; under columns named by numbers, as numbers:
  a label ``3`` alone under a column ``3``, or ``y`` under ``y``, is a class); with a guessed "no header", a first row that
  holds no number (or numbers that count up by one) and whose label no later row of any file has (pass ``header=True``, or
  ``False`` if that row is data).  A header that names a column twice (``age,age``) is an error
  naming both (pandas would read ``age``, ``age.1``).
- A header whose first field is empty is pandas' ``to_csv`` of a frame with its index (R's
  ``write.csv`` writes the same): that column is the index, dropped as if listed in ``drop``
  (``read_csv(index_col=0)`` reads it so); positions still count it.
- ``missing``: the cell texts that mean "missing" (an empty field only if ``""`` is listed;
  pandas' default list -- ``NA``, ``null``, ... -- is not used, and one of those in a column of
  numbers is an error naming file, line and column: as text it would make the column nominal; as a
  label, one among numbers is an error, one among text a warning: a class may be called ``None``).
  ``strip=True`` strips spaces around text cells first (UCI's comma-and-space files write `` ?``, which is otherwise no
  ``?``).  A row with fewer fields than the first is padded with missing values (as pandas
  does); one with more is an error naming the file and line.
- Columns: ``drop`` and ``label`` name them by header name or 0-based position in the file
  (positions count the dropped columns); ``label="last"`` / ``"first"`` mean the last / first
  column left after the drops (whatever the header calls its columns).

Features and labels (the paper's ``extract_features_labels``):

- rows whose label is missing are dropped, with a warning per file that says how many of its rows
  (``meta["unlabelled_rows"]`` counts them);
- column types and categories come from the training file where a ``test_path`` is given (lossbench's
  rule: nothing from the test file shapes the features), from every row of the one file otherwise
  (before the split, so that they do not change with its seed), and from every row read under
  ``paper_rules`` (the paper's);
- every column that ``pandas.to_numeric`` parses there is numeric, every other one nominal, and
  ``nominal=[...]`` (names or positions, as ``drop``) makes a column nominal whatever it holds; a
  cell of a numeric column that is no number (in the test file) is an error naming file, line and
  column, and so is a number that is not finite in float32, the features' type (``inf``,
  ``1e999``, ``1e300``: beyond ±3.4e38);
- a column of numbers but for a few cells that each occur once (one, or at most 5 % of its
  non-missing cells: a ``-`` placeholder, a ``1,5`` written with a decimal comma, a typo) is an
  error naming the first such cell, and so is one holding one of pandas' missing spellings (``NA``,
  ``null``, ...) whatever their count: list them in ``missing=[...]`` (or pass ``decimal=","``), or
  the column in ``nominal=[...]``.  As nominal it would be a category per distinct value.  A value
  that recurs (``2, 3, 4, 5more``) makes a nominal column; ``paper_rules`` refuses only the missing
  spellings.  A column whose every cell is a number written with a decimal comma (``4,45``, without
  ``decimal=","``) is an error too, not a category per value;
- classes: the sorted distinct labels (numerically for a numeric column, which must then hold
  integers, kept exact: from 2**53 on, a column pandas read as floats is refused; text labels are stripped of surrounding spaces, as the text loader's are, and of
  ``label_strip``'s characters at both ends, so ``" x"`` and ``"x "`` are one class ``x``); a
  table with a single class is an error, and labels that differ only by a trailing ``.`` (``z``,
  ``z.``) are warned of (``label_strip="."`` makes them one).  The paper maps numeric labels
  ``y -> y - min(y)``, which equals this when the labels are consecutive integers (they are in its
  sets);
- nominal columns are one-hot encoded over their sorted values, a missing value being the
  category ``"nan"``, at most ``max_categories`` values (50 in the paper) per column; a value
  no training row has is all zeros (a warning names the first test row that holds one); where a
  column holds numbers read as numbers in some rows and as text in others (pandas types each text
  file on its own: a column of numbers only, or beside text; Excel types each cell), a number is
  one category however it was written (``1.50``, ``1.5``; not under ``paper_rules``); the one-hot block of column ``c`` (features ``c-value``)
  replaces it at the end of the feature list, numeric columns keeping their order;
- missing numeric values (``impute``): ``"mean"`` -- the column's mean over every labelled row
  read (test file included, before any split: the paper's rule), ``"train_mean"`` -- the mean
  over the training rows only (nothing from the test rows leaks in), ``"error"`` -- an error
  naming file, line and column.  A column with no value in the rows that type the columns (the training
  file's; every row without a test file or with ``"mean"``) is dropped, with a warning; one whose values a
  drawn split puts only in its test rows is set to one value in every row, with a warning: whatever the
  seed, the same features.

Split and scaling (the paper's ``run.py``):

- with ``test_path`` its rows are the test split (a ``test_fraction`` beside it is refused); otherwise
  ``test_fraction`` of the rows (default 0.2) is held out by ``split="random"`` -- ``sklearn.model_selection.train_test_split(test_size=test_fraction,
  random_state=seed)``, unstratified, the rows kept in the order it returns (the paper's
  split) -- or ``split="stratified"`` -- lossbench's seeded ``stratified_split`` (sorted rows);
  a class that only the test rows have is an error with a ``test_path`` and a warning with a split
  drawn here (a rare class may fall there: the model never trains on it);
- ``standardize=True``: every feature, one-hot columns included, becomes ``(x - mean) / std``
  with the training split's mean and std (ddof 0, computed in float64).  A feature constant on the
  training split is centred only, and a warning names it; the paper floors std at
  ``1e-6`` instead, which scales a test row that differs there by 1e6.

Defaults: the generic loader splits ``"stratified"`` and imputes ``"train_mean"`` (lossbench's
usual: nothing from the test rows shapes the training features); the registered ``uci-*`` sets
pass the paper's ``"random"`` split and ``"mean"`` imputation.  Read with ``paper_rules=True`` (as the
catalog reads them), they also keep the paper's rules where a table of yours gets lossbench's: std
floored at 1e-6, column types and categories from every row, a repeated header name read as pandas
renames it (``audit_risk.csv``'s two ``Score_B``), unlabelled rows dropped without a warning (the
catalog tells them); so their data stay those that stored studies saw.

``content_sha256``: a digest of the parsed cells (``meta["content_sha256"]``, see
``content_digest``) that the table must have; it checks files whose bytes differ between
copies while their cells do not (Excel's metadata).  Parsed tables are cached (``_cache``).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import re
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch

from lossbench._checks import first_few
from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset, check_test_labels, classes_alike_by_case
from lossbench.data._files import no_nul, read_bytes, split_lines, utf_bom
from lossbench.data._tabular import FLOAT32_MAX
from lossbench.data.splits import (
    check_split_seed,
    random_split,
    resolve_test_fraction,
    stratified_split,
)
from lossbench.data.splits import standardize as scale

EXCEL_SUFFIXES = (".xls", ".xlsx", ".xlsm")
SPLITS = ("random", "stratified")
IMPUTE = ("mean", "train_mean", "error")
STD_FLOOR = 1e-6  # the paper's run.py: np.maximum(np.std(X, axis=0), 1e-6); the uci-* sets only
MAX_CATEGORIES = 50  # the paper's one_hot_categorical
# The one-hot blocks' cells (rows x their features) a table may make: 8 GiB as the float64 matrix; a raised
# max_categories on a column of ids asked numpy for 37 GiB, and its MemoryError came as a traceback.
MAX_ONEHOT_CELLS = 1 << 30
HEADER_SAMPLE_ROWS = 50
# Part of the parse-cache key: bump when the parsed output of load_table changes.  2: an index column is
# dropped (a header with an empty first field was read as data); 3: a column of numbers with a cell such
# as "NA" is refused (it was one-hot encoded); 4: unlabelled rows counted per file, the label column named;
# 5: the training file types the columns, labels stripped of spaces; 6: nominal=[...], stray cells that recur;
# 7: a missing spelling among numbers refused whatever else the column holds; 8: a number is one category
# however a file wrote it, a label spelled missing refused or warned of, a header of counting numbers refused;
# 9: a text holding a NUL character refused; 10: warnings in the payload, quotes open at a field's start, rows
# merged by a stray quote refused, headers of columns 0, 1, 2 found, placeholders no header names, integer
# labels exact beyond 2**53; 11: a multi-line quoted cell holding the delimiter loaded again, quotes ignored with
# a regular-expression sep; 12: a header guessed from integers alone warned of, a repeated header of numbers refused;
# 13: a label equal to its column's name alone is a class, a header guessed past trailing empty columns;
# 14: labels differing only by case warned of, and dates (numbers from Excel, categories from text).
PARSE_VERSION = 14
WHITESPACE = r"\s+"


# --- reading ----------------------------------------------------------------------------------


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise ValueError(f"{what}={str(path)!r} is a directory, expected a table file")
    if not path.is_file():
        if path.exists():
            raise ValueError(f"{what}={str(path)!r} is not a regular file (a FIFO, socket or device), expected a table file")
        where = "" if path.is_absolute() else f" (a relative path, read from {Path.cwd()})"
        raise ValueError(f"{what}={str(path)!r}: no such file{where}")


def _is_excel(path: Path) -> bool:
    return path.suffix.lower() in EXCEL_SUFFIXES


def _decode(data: bytes, path: Path, encoding: str) -> str:
    bom = utf_bom(data)
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if utf8 and bom:
        encoding = bom  # (Excel's "Unicode text" is UTF-16 with a BOM)
    try:
        return no_nul(data.decode("utf-8-sig" if utf8 and not bom else encoding), path)
    except LookupError:
        raise ValueError(f"encoding={encoding!r} is not a known text encoding") from None
    except UnicodeDecodeError as err:
        if not bom:  # a binary file (NumPy's .npy, say): its NUL bytes say so, which no encoding= cures
            no_nul(data.decode("latin-1"), path)
        line = data[: err.start].count(b"\n") + 1
        advice = (
            f"it starts with a {bom.upper()} byte-order mark: pass encoding={bom!r}"
            if bom and bom != encoding
            else "pass encoding= with the file's encoding, e.g. encoding='latin-1'"
        )
        raise ValueError(f"{path}:{line}: not {encoding} text (byte 0x{data[err.start]:02x}); {advice}") from None


def _auto_sep(path: Path, first_line: str) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2")]
    last = suffixes[-1] if suffixes else ""
    if last in (".tsv", ".tab"):
        return "\t"
    semicolons = ";" in first_line and "," not in first_line and "\t" not in first_line
    if semicolons and (last == ".csv" or " " not in first_line.strip()):
        return ";"  # (read with a comma, such a line is one column; with spaces in it, outside a .csv, columns)
    if last == ".csv" or "," in first_line:
        return ","
    return "\t" if "\t" in first_line else WHITESPACE


def _is_number(value: Any, decimal: str = ".") -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    try:
        float(str(value).replace(decimal, "."))
    except ValueError:
        return False
    return True


def _data_only(value: Any, decimal: str) -> bool:
    """Whether a first-row field marks that row as data: one of pandas' missing spellings, or a number
    with decimals (a header may name columns 0, 1, 2, as pandas' ``to_csv`` of an array writes them)."""
    text = str(value).strip()
    return text in NA_SPELLINGS or (_is_number(text, decimal) and not re.fullmatch(r"[-+]?\d+", text))


def _counts_up(numbers: Sequence[float]) -> bool:
    """Whether ``numbers`` count up by one, as numbers naming columns do (0, 1, 2: pandas' ``to_csv`` of
    an array; years): at least two of them."""
    return len(numbers) >= 2 and all(b - a == 1 for a, b in zip(numbers, numbers[1:]))


def _looks_like_header(sample: Any, missing: Sequence[str], decimal: str) -> bool:
    """The first row of ``sample`` names the columns (module docstring).

    ``sample``: the first rows as text, read with no cell made missing, so that an empty first
    header field (an index column) is told from a missing one.
    """
    import pandas as pd

    def absent(v: Any) -> bool:
        return pd.isna(v) or v in missing

    if len(sample) < 2:  # (an empty sheet too: no row to look at)
        return False
    # trailing columns empty in every row (each line ending in the delimiter) have no name to look at
    while sample.shape[1] > 1 and all(pd.isna(v) or v == "" for v in sample.iloc[:, -1]):
        sample = sample.iloc[:, :-1]
    first, rest = sample.iloc[0], sample.iloc[1:]
    if any(absent(v) for v in first.iloc[1:]):
        return False
    if any(_data_only(v, decimal) for v in first):  # ("NA,2.5,z": a data row, its NA a stray cell)
        return False
    if absent(first.iloc[0]) and first.iloc[0] != "":  # "" there: an index column's
        return False
    for j in range(sample.shape[1]):
        below = [v for v in rest.iloc[:, j] if not absent(v)]
        name = first.iloc[j]
        # (a name holds a letter or digit: ".", "-" over numbers are placeholders in a data row)
        if below and re.search(r"[^\W_]", name) and not _is_number(name) and all(_is_number(v, decimal) for v in below):
            return True
    # Columns named by numbers that count up by one (_counts_up) beside
    # names that no row below repeats in their column (a text label column's name).
    counted = [int(v) for v in first if isinstance(v, str) and re.fullmatch(r"[-+]?\d+", v.strip())]
    if counted == list(range(len(first) - (first.iloc[0] == ""))) and len(counted) >= 2:
        # every column named 0, 1, 2, ...: pandas' to_csv of an array (and its index column); two columns "0,1"
        # name columns only over numbers with decimals (a data row of integers may read 0,1)
        cells = [str(v).strip() for v in rest.to_numpy().ravel() if not absent(v)]
        decimals = any(_is_number(v, decimal) and not re.fullmatch(r"[-+]?\d+", v) for v in cells)
        if len(counted) >= 3 or decimals:
            return True
    named = [j for j, v in enumerate(first) if isinstance(v, str) and v.strip() and not _is_number(v, decimal)]
    if _counts_up(counted) and named:
        return all(first.iloc[j] not in set(rest.iloc[:, j]) for j in named)
    return False


def _sniff_header(
    sample: Any,
    header: bool | None,
    missing: Sequence[str],
    where: str,
    repeated_ok: bool,
    decimal: str = ".",
) -> tuple[bool, bool]:
    """(whether the first row is a header, whether its first field is empty: an index column).

    A header that repeats a name is refused unless ``repeated_ok``: pandas reads ``age,age`` as ``age``,
    ``age.1``, and which column is meant is then a guess."""
    if header is None:
        header = _looks_like_header(sample, missing, decimal)
    first = list(sample.iloc[0]) if header and len(sample) else []
    names = [v for v in first if isinstance(v, str) and v.strip()]  # (pandas names empty ones "Unnamed: k")
    repeated = sorted({v for v in names if names.count(v) > 1}, key=names.index)
    if repeated and not repeated_ok:
        raise ValueError(
            f"{where}: the header names column(s) {', '.join(map(repr, repeated))} more than once; "
            f"rename them (pandas would read them as {repeated[0]!r}, {repeated[0] + '.1'!r})"
        )
    return bool(header), bool(header) and len(sample) > 0 and sample.iloc[0, 0] == ""


def _strip_cells(frame: Any, missing: Sequence[str]) -> Any:
    import pandas as pd

    for c in frame.columns:
        col = frame[c]
        if not pd.api.types.is_numeric_dtype(col):
            stripped = col.map(lambda v: v.strip() if isinstance(v, str) else v)
            frame[c] = stripped.mask(stripped.isin(list(missing)))
    return frame


def _honours_quotes(sep: str) -> bool:
    """Whether pandas reads quoted fields with ``sep``: one character, or runs of whitespace (its C engine); a
    longer sep is a regular expression that its python engine splits lines with, quotes and all."""
    return len(sep) == 1 or sep == WHITESPACE


def _quoted_records(
    lines: list[str], first: int, skip: Any, sep: str, path: Path
) -> tuple[list[tuple[int, str]], list[tuple[int, str]], list[tuple[int, int, int]]]:
    """The (number, text) of the lines from ``lines[first]`` on that pandas is given (blank and comment lines
    dropped, but inside a quoted field), of those that start a row, and the (first line, line where the quote
    opens, last line) of each row whose quoted field spans lines (judged by ``_check_spanning_rows``).

    Quotes follow pandas' rules: a double quote opens a quoted field only at a field's start (``12" screen`` is
    text), ``""`` inside one is a quote, and the next quote closes it.  A quoted field that runs to the end of
    the file is an error naming the line where it opens.  Where pandas does not honour quotes (a regular
    expression ``sep``), none of this applies."""
    if not _honours_quotes(sep):
        kept = [(n, line) for n, line in enumerate(lines[first:], first + 1) if not skip(line)]
        return kept, kept, []
    if len(sep) == 1:
        field_start = lambda line, k: k == 0 or line[k - 1] == sep  # noqa: E731
    else:  # (runs of whitespace)
        field_start = lambda line, k: k == 0 or line[k - 1] in " \t"  # noqa: E731
    kept: list[tuple[int, str]] = []
    starts: list[tuple[int, str]] = []
    spans: list[tuple[int, int, int]] = []
    opened = None  # the line of an open quoted field
    span_from = None  # (first line, line of the quote) of the row whose quoted field swallowed a line end
    for number, line in enumerate(lines[first:], first + 1):
        if opened is None:
            if skip(line):
                continue
            starts.append((number, line))
        kept.append((number, line))
        if opened is None and '"' not in line:
            continue
        j = 0  # where to look on
        while True:
            k = line.find('"', j)
            if opened is None:
                while k > 0 and not field_start(line, k):
                    k = line.find('"', k + 1)
                if k < 0:
                    break
                opened = number
            else:
                while 0 <= k < len(line) - 1 and line[k + 1] == '"':
                    k = line.find('"', k + 2)
                if k < 0:
                    break
                opened = None
            j = k + 1
        if opened is not None and span_from is None:
            span_from = (starts[-1][0], opened)
        elif opened is None and span_from is not None:
            spans.append((*span_from, number))
            span_from = None
    if opened is not None:
        raise ValueError(f"{path}:{opened}: the '\"' that opens a quoted field here is never closed (it runs to "
                         "the end of the file); close it, or remove it")  # fmt: skip
    return kept, starts, spans


def _fields(text: str, sep: str, line: int = 1) -> tuple[int, str | None]:
    """The number of fields of one row's ``text`` as pandas reads it, and why a strict reading (RFC 4180) fails
    there, or None: a closing quote that neither the delimiter nor the line end follows, or none.  ``sep``: one
    character, or WHITESPACE; ``line``: the file line ``text`` starts on."""
    runs = sep == WHITESPACE
    delimiter = (lambda c: c in " \t") if runs else (lambda c: c == sep)  # noqa: E731
    i, n, count, why = 0, len(text), 0, None
    if runs:
        while i < n and delimiter(text[i]):
            i += 1
    while True:
        count += 1
        if i < n and text[i] == '"':
            i += 1
            while True:
                k = text.find('"', i)
                if k < 0:
                    return count, why or "a quote is never closed"
                i = k + 1
                if text[i : i + 1] != '"':
                    break
                i += 1
            if i < n and not delimiter(text[i]) and text[i] != "\n" and why is None:
                why = f"the quote closed on line {line + text.count(chr(10), 0, i)} is followed by {text[i]!r}"
        while i < n and not delimiter(text[i]) and text[i] != "\n":  # (pandas reads on as text)
            i += 1
        if i >= n or text[i] == "\n":
            return count, why
        i += 1
        if runs:
            while i < n and delimiter(text[i]):
                i += 1
            if i >= n or text[i] == "\n":  # (trailing whitespace makes no field)
                return count, why


def _check_spanning_rows(
    lines: list[str], starts: list[tuple[int, str]], spans: list[tuple[int, int, int]], sep: str, path: Path
) -> None:
    """Refuse the rows whose quoted field spans lines where a stray quote merged rows: a strict reading fails
    there (``"Awful" indeed``), or the row has another number of fields than the first row (one more than a
    header of R's ``write.table``).  A valid multi-line cell (``"Hello, world<newline>again"``) is read as it is.
    Lines that a stray quote merged and that a strict reading takes as one row of the right width cannot be
    told from such a cell."""
    if not spans:
        return
    ends = {begin: end for begin, _, end in spans}
    row = lambda begin: "\n".join(lines[begin - 1 : ends.get(begin, begin)])  # noqa: E731
    width = _fields(row(starts[0][0]), sep)[0]
    if len(starts) > 1 and _fields(row(starts[1][0]), sep)[0] == width + 1:
        width += 1  # (pandas reads the first column as the index)
    for begin, opened, end in spans:
        count, why = _fields(row(begin), sep, begin)
        if why is not None:
            raise ValueError(f"{path}:{opened}: the '\"' that opens a quoted field here swallows the line ends up to "
                             f"line {end} (read strictly, {why}): rows merged by a stray quote; close it, write it "
                             "twice (\"\") inside a quoted field, or remove it")  # fmt: skip
        if count != width and begin != starts[0][0]:
            raise ValueError(f"{path}:{begin}: expected {width} fields, got {count} (the row runs to line {end}: a "
                             "quoted field holds line ends)")  # fmt: skip


def _read_text_frame(
    path: Path,
    sep: str | None,
    header: bool | None,
    missing: Sequence[str],
    comment: str | None,
    encoding: str,
    decimal: str,
    repeated_ok: bool,
) -> tuple[Any, bool, bool, list[str], list[str | None]]:
    """The DataFrame of a text table, whether it had a header, whether an index column, where each
    row is (file:line), its text."""
    import pandas as pd

    try:
        data = read_bytes(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err.strerror or err})") from None
    text = _decode(data, path, encoding)
    lines = split_lines(text)
    skip = lambda line: not line.strip() or bool(comment and line.lstrip().startswith(comment))  # noqa: E731
    # (no quoted field is open before the first row, so these first lines need no quote rules)
    first = next((i for i, line in enumerate(lines) if not skip(line)), None)
    hint = re.fullmatch(r"sep=(.)", lines[first]) if first is not None else None  # Excel's delimiter line
    if hint:
        sep = hint.group(1) if sep is None else sep
        first = next((i for i in range(first + 1, len(lines)) if not skip(lines[i])), None)
    if first is None:
        raise ValueError(f"{path}: no data rows")
    if sep is None:
        sep = _auto_sep(path, lines[first])
    elif sep == "whitespace":
        sep = WHITESPACE
    if len(sep) > 1:  # (pandas reads a sep of more than one character as a regular expression)
        try:
            re.compile(sep)
        except re.error as err:
            raise ValueError(f"sep={sep!r} is neither one character nor a valid regular expression ({err})") from None
    kept, starts, spans = _quoted_records(lines, first, skip, sep, path)
    _check_spanning_rows(lines, starts, spans, sep, path)
    body = "\n".join(line for _, line in kept) + "\n"

    def read(**more: Any) -> Any:
        try:
            return pd.read_csv(
                io.StringIO(body), sep=sep, decimal=decimal, keep_default_na=False,
                **{"na_values": list(missing), **more},
            )
        except pd.errors.ParserError as err:
            msg = " ".join(str(err).split())
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
            if m and int(m.group(2)) <= len(starts):  # (pandas counts rows, not lines)
                line = starts[int(m.group(2)) - 1][0]
                # (a note above the table, "# exported by ...", set the width the next line breaks; not a delimiter)
                opening = lines[starts[0][0] - 1].lstrip()
                noted = (opening[:1] in ("#", "%", ";") and opening[:1] != sep and comment is None
                         and len(starts) > 1 and line == starts[1][0])  # fmt: skip
                note = (f" (line {starts[0][0]}, {opening[:30]!r}, sets the width: a note above the table? pass "
                        f"comment={opening[0]!r})" if noted else "")  # fmt: skip
                raise ValueError(f"{path}:{line}: expected {m.group(1)} fields, got {m.group(3)}{note}") from None
            raise ValueError(f"{path}: unreadable table ({msg})") from None
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: no data rows") from None

    index = False
    if header is not False:  # (with header=True only its line: R's write.table has one field fewer there)
        sample = read(header=None, dtype=str, nrows=HEADER_SAMPLE_ROWS + 1 if header is None else 1, na_values=[])
        header, index = _sniff_header(sample, header, missing, f"{path}:{kept[0][0]}", repeated_ok, decimal)
    frame = read(header=0 if header else None)
    rows = starts[1 if header else 0 :]
    if len(rows) == len(frame):  # (each row's first line: a quoted field may span lines)
        return frame, header, index, [f"{path}:{i}" for i, _ in rows], [line for _, line in rows]
    return (  # (pandas counted rows otherwise: count rows instead)
        frame,
        header,
        index,
        [f"{path}: data row {i}" for i in range(1, len(frame) + 1)],
        [None] * len(frame),
    )


def _read_excel_frame(
    path: Path, header: bool | None, missing: Sequence[str], sheet: str | int, repeated_ok: bool
) -> tuple[Any, bool, bool, list[str], list[str | None]]:
    import pandas as pd

    def read(**more: Any) -> Any:
        with warnings.catch_warnings():
            # pandas 3 deprecates xlrd (.xls) in favour of calamine; both read the same cells.
            warnings.filterwarnings("ignore", message=".*xlrd.*")
            try:
                return pd.read_excel(
                    path, sheet_name=sheet, keep_default_na=False, **{"na_values": list(missing), **more}
                )
            except ImportError as err:
                msg = " ".join(str(err).split())
                raise ValueError(
                    f"{path}: reading {path.suffix} files needs another package ({msg})"
                ) from None
            except Exception as err:  # noqa: BLE001  (openpyxl, xlrd, zipfile: each its own error types)
                msg = " ".join(str(err).split())
                raise ValueError(
                    f"{path}: cannot read sheet {sheet!r} of this Excel file ({type(err).__name__}: {msg})"
                ) from None

    index = False
    if header is not False:
        sample = read(header=None, dtype=str, nrows=HEADER_SAMPLE_ROWS + 1 if header is None else 1, na_values=[])
        header, index = _sniff_header(sample, header, missing, f"{path}: sheet {sheet!r}", repeated_ok)
    frame = read(header=0 if header else None)
    return (
        frame,
        header,
        index,
        [f"{path}: data row {i}" for i in range(1, len(frame) + 1)],
        [None] * len(frame),
    )


def _read_frame(
    path: Path,
    *,
    sep: str | None,
    header: bool | None,
    missing: Sequence[str],
    strip: bool,
    comment: str | None,
    sheet: str | int,
    encoding: str,
    decimal: str,
    repeated_ok: bool,
) -> tuple[Any, bool, bool, list[str], list[str | None]]:
    """The frame, whether it had a header, whether an index column (first), where each row is, its text."""
    if _is_excel(path):
        frame, header, index, where, texts = _read_excel_frame(path, header, missing, sheet, repeated_ok)
    else:
        frame, header, index, where, texts = _read_text_frame(
            path, sep, header, missing, comment, encoding, decimal, repeated_ok
        )
    if len(frame) == 0:
        raise ValueError(f"{path}: no data rows" + (" below its header line" if header else ""))
    if strip:
        frame = _strip_cells(frame, missing)
    return frame, header, index, where, texts


def _cell_text(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, numbers.Number):
        return repr(float(value))
    return str(value)


_DIGEST_CELLS = 1 << 20  # cells hashed per chunk of rows: the chunk's text is built whole, so memory stays bounded


def _column_texts(column: Any) -> list[str]:
    """:func:`_cell_text` of each cell of a frame column: a numpy float, integer or bool column's cells are
    Python floats, ints and bools (as a row of ``itertuples`` gives them), spelled without the per-cell tests."""
    import numpy as np

    kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else "-"  # (not pandas' nullable dtypes)
    if kind == "f" and column.dtype.itemsize <= 8:  # (a long double's cells are numpy scalars: the generic path)
        return ["" if v != v else repr(v) for v in column.tolist()]
    if kind in ("i", "u"):
        return [repr(float(v)) for v in column.tolist()]
    if kind == "b":
        return ["True" if v else "False" for v in column.tolist()]
    return [_cell_text(v) for v in column]


def content_digest(*frames: Any) -> str:
    """SHA-256 of parsed tables' cells: column names, then rows, numbers as ``repr(float)``.

    It identifies the data whatever bytes (Excel metadata, line endings) carried it.  The bytes hashed are
    each frame's ``"\\x1d"`` and column names joined by ``"\\x1f"``, then per row ``"\\x1e"`` and its cells'
    texts joined by ``"\\x1f"`` (built a column and a chunk of rows at a time: one row at a time was most of
    a large table's parse).
    """
    h = hashlib.sha256()
    for frame in frames:
        h.update(("\x1d" + "\x1f".join(map(str, frame.columns))).encode())
        step = max(1, _DIGEST_CELLS // max(1, frame.shape[1]))  # (rows per chunk by cells: a wide table's are many)
        for start in range(0, len(frame), step):
            part = frame.iloc[start : start + step]
            columns = [_column_texts(part.iloc[:, j]) for j in range(part.shape[1])]
            rows = zip(*columns) if columns else [()] * len(part)  # (a row of no cells is still a row)
            h.update("".join(["\x1e" + "\x1f".join(row) for row in rows]).encode())
    return h.hexdigest()


# --- columns, labels and features ---------------------------------------------------------------


def _column(spec: str | int, columns: list[Any], header: bool, path: Path, what: str, why: str = "") -> Any:
    """The frame column that ``spec`` (a header name or a 0-based file position) names; ``why``: what may
    have hidden the header (``_header_hint``)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not -len(columns) <= spec < len(columns):
            raise ValueError(f"{what}={spec}: {path} has {len(columns)} columns (0-based index)")
        return columns[spec]
    if not isinstance(spec, str):
        raise ValueError(f"{what}={spec!r}: expected a column name or a 0-based column index")  # noqa: TRY004
    if not header:
        raise ValueError(
            f"{what}={spec!r} is a column name but {path} is read without a header; pass an index{why}"
        )
    if spec not in columns:
        spaced = [c for c in columns if isinstance(c, str) and c.strip() == spec.strip()]
        if len(spaced) == 1:  # ("a, b, y": its header names are " b" and " y")
            return spaced[0]
        listed = ", ".join(map(str, columns))
        raise ValueError(f"{what}={spec!r}: no such column in {path} (columns: {listed})")
    return spec


def _label_column(
    label: str | int, kept: list[Any], columns: list[Any], header: bool, path: Path, why: str = "",
    frames: Sequence[Any] = (),
) -> Any:
    """The label's column; "last" and "first" pass over columns empty in every row of ``frames`` (each line
    ending in the delimiter, as many tools write a table, gave an empty last column)."""
    if label in ("last", "first"):
        order = kept[::-1] if label == "last" else kept
        found = next((c for c in order if not all(_empty_column(frame[c]) for frame in frames)), None)
        if found is None:
            raise ValueError(f"{path}: no column left for label={label!r} after the drops"
                             + (" (the others are empty in every row)" if kept else ""))  # fmt: skip
        return found
    col = _column(label, columns, header, path, "label", why)
    if col not in kept:
        raise ValueError(f"label={label!r} names a dropped column of {path}")
    return col


def _empty_column(values: Any) -> bool:
    """Whether every cell is missing or blank (stops at the first filled one)."""
    import pandas as pd

    return all(pd.isna(v) or (isinstance(v, str) and not v.strip()) for v in values)


def _refuse_header_only(
    frames: list[Any], paths: list[Path], headers: list[bool], guessed: bool, specs: list[str | int]
) -> None:
    """A file of one line that names the label or a dropped column (or, alone, holds no number) is a header
    with no rows below: the guess reads it as data only because no row below can be compared with it."""
    import pandas as pd

    named = {s for s in specs[1:] if isinstance(s, str)} | ({specs[0]} - {"first", "last"})
    for frame, path, has_header in zip(frames, paths, headers):
        if not guessed or has_header or len(frame) != 1:
            continue
        cells = [c for c in frame.iloc[0] if isinstance(c, str) or not pd.isna(c)]
        no_number = len(frames) == 1 and all(not _is_number(c) for c in cells)
        if no_number or named & {c.strip() for c in cells if isinstance(c, str)}:
            raise ValueError(f"{path}: no data rows below its header line")


def _refuse_header_as_data(
    frames: list[Any],
    wheres: list[list[str]],
    headers: list[bool],
    guessed: bool,
    label_col: Any,
    why: str = "",
    paper: bool = False,
) -> None:
    """A header line read as data makes its label a class of its own and numeric columns nominal."""
    import numpy as np
    import pandas as pd

    later = {v for f in frames for v in f[label_col].iloc[1:]}  # the labels of the rows after the first
    for frame, where, has_header in zip(frames, wheres, headers):
        labels = frame[label_col]
        if has_header:  # a repeated header line (files concatenated)
            name = str(label_col).strip()
            if _is_number(name):
                # a column named by a number (pandas' to_csv of an array): a label equal to it, as a number, may be
                # a class; a repeated header line repeats every such name in its column
                numbered = [c for c in frame.columns if _is_number(str(c).strip())]
                same = np.logical_and.reduce([_equals_number(frame[c], str(c)) for c in numbered])
                hits = np.flatnonzero(same).tolist()
            else:  # (a label alone equal to its column's name, "y" under column "y", is a class)
                hits = _repeated_header_rows(frame, label_col)
            if hits:
                also = " (or pass header=False if the first row is data too)" if guessed else ""
                v = labels.iloc[hits[0]]
                v = v.item() if isinstance(v, np.generic) else v  # (3, not np.int64(3))
                raise ValueError(
                    f"{where[hits[0]]}: the label {v!r} is the label column's name and the row's other cells repeat "
                    f"the header's: a header line read as data; remove it{also}"
                )
        elif guessed:  # guessed "no header", but the first row holds no number, its label no other row's
            v, first = labels.iloc[0], frame.iloc[0]
            names = all(not _is_number(c) for c in first if isinstance(c, str) or not pd.isna(c))
            # ... or its numbers count up by one, as column names do
            counted = [float(c) for c in first.drop(label_col) if _is_number(c) and not pd.isna(c)]
            counting = not paper and _counts_up(counted)
            if isinstance(v, str) and not _is_number(v) and (names or counting) and v not in later:
                what = "no number" if names else "numbers that count up by one as column names do"
                raise ValueError(
                    f"{where[0]}: the first row looks like a header read as data ({what}, and its label "
                    f"{v!r} is in no other row); pass header=True, or header=False if it is data{why}"
                )


def _repeated_header_rows(frame: Any, label_col: Any) -> list[int]:
    """The rows whose label is the label column's name and whose other cells repeat their columns' names but
    where empty (an index column's: pandas names it ``Unnamed: 0``), at least one of them."""
    import numpy as np
    import pandas as pd

    def named(rows: Any, c: Any) -> Any:
        return rows[c].map(lambda v: isinstance(v, str) and v.strip() == str(c).strip()).to_numpy(bool)

    candidates = np.flatnonzero(named(frame, label_col))  # (usually none: the other columns then go unread)
    columns = [c for c in frame.columns if c != label_col]
    if not columns or not len(candidates):
        return []
    rows = frame.iloc[candidates]
    empty = [rows[c].map(lambda v: pd.isna(v) or v == "").to_numpy(bool) for c in columns]
    others = [named(rows, c) for c in columns]
    repeats = np.logical_and.reduce([n | e for n, e in zip(others, empty)]) & np.logical_or.reduce(others)
    return candidates[repeats].tolist()


def _equals_number(column: Any, name: str) -> Any:
    """Which cells of ``column`` equal the number ``name`` as numbers (3, 3.0, "3", " 3.0" all equal "3")."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        return np.zeros(len(column), dtype=bool)
    values = pd.to_numeric(column.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    return (values == float(name)).to_numpy()


def _warn_counted_header(
    frames: list[Any], wheres: list[list[str]], label_col: Any, indexed: bool, path: Path, notes: list[str]
) -> None:
    """A guessed header found only by its integers (``0,1,2,3``: pandas' to_csv of an array) whose label column's
    name is also a label below (``3``) may be a headerless file's first row of data: warned of."""
    import numpy as np

    names = [str(c).strip() for c in frames[0].columns[1 if indexed else 0 :]]
    name = str(label_col).strip()
    if not all(re.fullmatch(r"[-+]?\d+", c) for c in names):  # (a name beside them: not counting alone)
        return
    for frame, where in zip(frames, wheres):
        hits = np.flatnonzero(_equals_number(frame[label_col], name))
        if len(hits):
            notes.append(f"{path}: the first row ({','.join(names)}) is read as the header, as pandas' to_csv writes "
                         f"one for an array, but its label column's name {name!r} is also a label below "
                         f"({where[hits[0]]}): if that row is data, pass header=False")  # fmt: skip
            return


def _shape(text: str) -> str:
    """A token's kind, letter by letter: ``"x"`` and ``"z"`` are ``"a"``, ``"B2"`` is ``"A9"``."""
    text = re.sub(r"\d", "9", text)
    return re.sub(r"[^\W\d_]", lambda m: "A" if m.group().isupper() else "a", text)


def _warn_label_like_name(frames: list[Any], label_col: Any, path: Path, notes: list[str]) -> None:
    """A guessed header that names a column by a number (``a,2,z``) and whose label column's name is shaped as
    every label below it (``z`` over ``x``, ``y``), no label itself, may be a data row whose class occurs once:
    warned of (``a,b,y`` over labels ``x``, ``z`` is a header; ``a,2,z`` may be too)."""
    name = str(label_col).strip()
    labels = {v.strip() for f in frames for v in f[label_col] if isinstance(v, str) and v.strip()}
    numbered = any(_is_number(c) for c in frames[0].columns if isinstance(c, str))
    if numbered and labels and name not in labels and all(_shape(v) == _shape(name) for v in labels):
        notes.append(f"{path}: the first row is read as a header, but its label column's name {name!r} is a token "
                     f"like the labels below it ({first_few(sorted(labels))}) and no row's label: if that row is "
                     "data, pass header=False")  # fmt: skip


def _header_hint(first_line: str | None, decimal: str) -> str:
    """Why a header guess may have failed: numbers with decimal commas (``1,5``) are no numbers, so no
    column is a name over numbers.  Such tables separate fields with ';'."""
    if decimal == "." and first_line is not None and ";" in first_line and "," not in first_line:
        return (
            "; or, if its numbers have decimal commas (its first line holds ';' and no ','), "
            "pass sep=';', decimal=','"
        )
    return ""


def _class_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _category(value: Any) -> str:
    """A nominal cell as text, one text per value whichever file it came from: pandas reads each file
    on its own, so a 1 is the float 1.0 in a file with a missing cell there and the text "1" in a file
    with text in the column."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return _class_name(float(value))
    return str(value)


def _number_category(value: Any) -> str:
    """:func:`_category`, a text that is a number written as its number: a file whose column holds text
    too keeps "1.50" and "02134" as written, one whose column holds numbers only has 1.5 and 2134."""
    if isinstance(value, str) and _is_number(value):
        number = float(value)
        return _class_name(number) if math.isfinite(number) else value
    return _category(value)


# pandas' default spellings of a missing value (read_csv's na_values), which this loader does not
# take unless listed in ``missing``: in a column of numbers, one of them is refused by name.
NA_SPELLINGS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                          "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})  # fmt: skip
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+")  # a number written 1,5 (read as one with decimal=",")
# A column of numbers but for this share of its cells, or a single cell, is refused (module docstring).
STRAY_SHARE = 0.05


def _check_range(values: Any, c: Any, where: list[str], texts: list[str | None]) -> None:
    """Refuse numbers that are not finite in float32, the features' dtype (float64 ``values``, NaN missing)."""
    import numpy as np

    bad = np.flatnonzero(np.abs(values) > FLOAT32_MAX)  # (inf included; NaN compares False)
    if len(bad):
        i = int(bad[0])
        line = f" (line {texts[i][:200]!r})" if texts[i] is not None else ""
        what = "is not a finite number" if np.isinf(values[i]) else f"is beyond float32's range (±{FLOAT32_MAX:.4g})"
        raise ValueError(f"{where[i]}: column {c!r}: {float(values[i])} {what}{line}")


def _labels(
    labels: Any, label_col: Any, where: list[str], texts: list[str | None], path: Path, paper: bool, notes: list[str]
) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """Class indices, class names, and pairs of names that differ only by a trailing '.' (warned of).

    A label that is one of pandas' missing spellings (R writes a missing label ``NA``) and not listed in
    ``missing`` is refused among numbers and warned of among text (a class may be called ``None``): the
    warning is added to ``notes``, which the loader warns of after the parse cache."""
    import numpy as np
    import pandas as pd

    spelled = [i for i, v in enumerate(labels) if isinstance(v, str) and v in NA_SPELLINGS]
    if spelled and not paper:
        i, others = spelled[0], labels[[not (isinstance(v, str) and v in NA_SPELLINGS) for v in labels]]
        advice = "list it in missing=[...] if it means no label (such rows are dropped, counted in a warning)"
        if len(others) and pd.to_numeric(others, errors="coerce").notna().all():
            raise ValueError(f"{where[i]}: label column {label_col!r} holds numbers and {labels.iloc[i]!r}, one of "
                             f"pandas' missing spellings; {advice}")  # fmt: skip
        notes.append(f"{where[i]}: the label {labels.iloc[i]!r} ({len(spelled)} row(s)) is read as a class, though it "
                     f"is one of pandas' missing spellings; {advice}")  # fmt: skip
    try:
        labels = pd.to_numeric(labels)
    except (ValueError, TypeError):
        pass
    if pd.api.types.is_integer_dtype(labels):
        values = labels.to_numpy()  # (exact: as float64, integers beyond 2**53 would merge into one class)
        classes_raw = sorted(set(values.tolist()))
    elif pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels):
        values = labels.to_numpy(dtype=np.float64)
        _check_range(values, label_col, where, texts)
        if not np.all(values == np.round(values)):
            i = int(np.flatnonzero(values != np.round(values))[0])
            raise ValueError(
                f"{where[i]}: label column {label_col!r} holds the non-integer number {float(values[i])!r}; "
                "a class label must be a category or an integer (is label= the right column?)"
            )
        if np.any(np.abs(values) >= 2**53):  # (pandas read the column as floats: a missing cell, a "1.0")
            i = int(np.flatnonzero(np.abs(values) >= 2**53)[0])
            raise ValueError(f"{where[i]}: label column {label_col!r} holds {float(values[i])!r} read as a floating-point "
                             "number, which cannot tell integers from 2**53 on apart (2**53 + 1 reads as 2**53); write "
                             "the labels as integers in every row, or as text (e.g. with a prefix)")  # fmt: skip
        classes_raw = sorted(set(values.tolist()))
    else:
        labels = labels.map(_category)
        classes_raw = sorted(set(labels))
        values = labels.to_numpy(dtype=object)
        if note := classes_alike_by_case(classes_raw, str(path)):
            notes.append(note)
    if len(classes_raw) < 2:
        raise ValueError(
            f"{path}: label column {label_col!r} holds a single class ({_class_name(classes_raw[0])!r}); "
            "a classification table needs at least 2"
        )
    index = {c: i for i, c in enumerate(classes_raw)}
    y = np.array([index[v] for v in values.tolist()], dtype=np.int64)
    names = [_class_name(c) for c in classes_raw]
    dotted = [(n.rstrip("."), n) for n in names if n.endswith(".") and n.rstrip(".") in index]
    return y, names, dotted


def _split(
    y: torch.Tensor, n_first: int, paths: list[Path], classes: list[str], split: str, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and test rows.  A test part that is empty is refused, and so is a test file's class
    that training never sees; a class that a split drawn here puts in its test rows only is warned of."""
    n = len(y)
    if len(paths) > 1:
        train_idx, test_idx = torch.arange(n_first), torch.arange(n_first, n)
        if len(test_idx) == 0:
            raise ValueError(f"test_path={str(paths[1])!r}: no labelled rows")
        check_test_labels(y[train_idx], y[test_idx], classes, f"test_path={str(paths[1])!r}")
        return train_idx, test_idx
    train_idx, test_idx = (
        random_split(n, test_fraction, seed) if split == "random" else stratified_split(y, val_fraction=test_fraction, seed=seed)
    )
    if len(test_idx) == 0 or len(train_idx) == 0:
        single = len(classes) == n and n > 1  # (a column of ids: every row its own class)
        why = f" (each of the {n} rows is a class of its own: is the label column an id?)" if single else ""
        raise ValueError(
            f"{paths[0]}: the {split} split with test_fraction={test_fraction:g} of {n} labelled rows "
            f"leaves the {'test' if len(train_idx) else 'training'} split empty{why}"
        )
    unseen = sorted(set(y[test_idx].tolist()) - set(y[train_idx].tolist()))
    if unseen:
        warnings.warn(f"{paths[0]}: the {split} split (test_fraction={test_fraction:g}, seed={seed}) puts every row of "
                      f"classes {first_few(classes[i] for i in unseen)} in the test part: the model never trains on them",
                      stacklevel=3)  # fmt: skip
    return train_idx, test_idx


def _features(
    features: Any,
    fit: Any,
    where: list[str],
    texts: list[str | None],
    *,
    max_categories: int,
    decimal: str,
    path: Path,
    paper: bool,
    notes: list[str],
    nominal: Collection[Any] = (),
) -> tuple[Any, list[str]]:
    """The feature matrix (float64, NaN missing) and names; ``fit``: the rows (bool) whose cells decide
    each column's type and categories (module docstring); ``nominal``: columns read as categories
    whatever they hold.  ``paper``: stray cells make a column nominal.  Warnings go to ``notes``."""
    import numpy as np
    import pandas as pd

    rows = np.flatnonzero(fit)
    encoded: dict[Any, Any] = {}  # nominal column -> its one-hot block
    width = 0  # the one-hot blocks' features so far
    for c in list(features.columns):
        col = features[c]
        numeric = c not in nominal
        if numeric:
            try:
                pd.to_numeric(col[fit])
            except (ValueError, TypeError):
                numeric = False
        if numeric:  # numeric in the fitted rows: another row's text is refused
            values = pd.to_numeric(col, errors="coerce")
            other = np.flatnonzero((col.notna() & values.isna()).to_numpy())
            if len(other):
                i = int(other[0])
                held = "only numbers" if col[fit].notna().any() else "no value"
                raise ValueError(
                    f"{where[i]}: column {c!r}: {str(col.iloc[i])[:40]!r} is no number, but the training rows hold "
                    f"{held} there; list it in missing=[...] if it means a missing value, or the column in nominal=[...]"
                )
            features[c] = values
            if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):  # (Excel's cells)
                notes.append(f"{path}: column {c!r} holds dates or durations, read as one number each (a date's "
                             "nanoseconds since 1970, a duration's in all); drop it (drop=[...]) if it is no feature")  # fmt: skip
            if not pd.api.types.is_bool_dtype(values):
                _check_range(values.to_numpy(dtype=np.float64, na_value=np.nan), c, where, texts)
            continue
        cells = col[fit]
        numbers = pd.to_numeric(cells.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
        text = rows[np.flatnonzero((cells.notna() & numbers.isna()).to_numpy())]  # the cells that are no number
        numbers_but = c not in nominal and bool(len(text)) and bool(numbers.notna().any())  # numbers, but for these
        tokens = [str(v).strip() for v in col.to_numpy()[text]]  # (by index into the array: .iloc per cell cost 80x)
        token = str(col.iloc[text[0]])[:40] if len(text) else ""
        few = len(tokens) <= max(1.0, STRAY_SHARE * int(cells.notna().sum()))
        stray = not paper and few and len(set(tokens)) == len(tokens)  # (a value that recurs is a category)
        spelled_missing = (any if not paper else all)(t in NA_SPELLINGS for t in tokens)  # (the paper's: only all)
        commas = decimal != "," and c not in nominal and [bool(_DECIMAL_COMMA.fullmatch(t)) for t in tokens]
        if commas and all(commas) and len(commas) == int(cells.notna().sum()):  # (every cell: "4,45", "0,90", ...)
            raise ValueError(f"{where[text[0]]}: column {c!r} holds numbers written with a decimal comma ({token!r}): "
                             "pass decimal=',' to read them as numbers, or the column in nominal=[...] to read each "
                             "value as a category")  # fmt: skip
        if numbers_but and (stray or spelled_missing):
            comma = commas and commas[0]  # a decimal comma in a ';' table
            hint = ", or pass decimal=',' for numbers written 1,5" if comma else ""
            if spelled_missing and not stray:  # name the missing spelling, not the first other cell
                i = next(i for i, t in zip(text, tokens) if t in NA_SPELLINGS)
                text, token = [i], str(col.iloc[i])[:40]
            raise ValueError(f"{where[text[0]]}: column {c!r} holds numbers and {token!r}, which is not among the "
                             f"table's missing values: list it in missing=[...] to read it as missing{hint}, or the "
                             f"column in nominal=[...] to read each value as a category")  # fmt: skip
        col = col.astype(object).fillna("nan")  # (a column of numbers read as nominal: "nan" is no float)
        if not all(isinstance(v, str) for v in set(col)):
            # mixed cell types (Excel, or files read apart) sort as text; outside the paper's rules a number
            # is one category however a file wrote it (the paper's sets keep the categories they had)
            col = col.map(_category if paper else _number_category)
        categories = sorted(set(col[fit]))
        known = set(categories)
        held = col.to_numpy()
        unseen = [i for i in np.flatnonzero(~fit) if held[i] not in known]  # (a test file's rows)
        if unseen:
            values = first_few(dict.fromkeys(held[i] for i in unseen))
            notes.append(f"{where[unseen[0]]}: column {c!r} holds a value no training row has, as do {len(unseen)} "
                         f"test row(s) in all ({values}): encoded as none of the training's categories (all zeros)")
        if len(categories) > max_categories:
            # (a column of numbers but for some cells: the first of those named, where it is)
            what = f"{where[text[0]]}: column {c!r} is not numeric (this line holds {token!r})" if numbers_but \
                else f"{path}: column {c!r} is read as nominal (nominal=[...])" if c in nominal \
                else f"{path}: column {c!r} is not numeric"
            raise ValueError(
                f"{what} and holds {len(categories)} distinct values, more than "
                f"max_categories={max_categories}; drop it (drop=[...]) or raise max_categories"
            )
        if len(categories) > 2 and _all_dates(categories):  # (a CSV's dates are text: a category per date)
            notes.append(f"{path}: column {c!r} holds dates as text ({categories[0]!r}, ...), one-hot encoded: a "
                         f"feature per date ({len(categories)}); drop it (drop=[...]) or write it as numbers")  # fmt: skip
        width += len(categories)
        if len(col) * width > MAX_ONEHOT_CELLS:
            raise ValueError(f"{path}: column {c!r}'s {len(categories)} values bring the one-hot features to {width} over "
                             f"{len(col)} rows, {len(col) * width * 8 / 2**30:.1f} GiB as float64 (at most "
                             f"{MAX_ONEHOT_CELLS * 8 / 2**30:.0f} GiB); drop it (drop=[...]) or lower max_categories")  # fmt: skip
        onehot = pd.get_dummies(col).reindex(columns=categories, fill_value=False)  # (a value fit never saw: zeros)
        encoded[c] = onehot.add_prefix(f"{c}-")
    # the numbers in their order, then each nominal column's one-hot block (joined once: a join per column copied all)
    features = pd.concat([features.drop(columns=list(encoded)), *encoded.values()], axis=1)
    matrix = np.array(features.astype(float).to_numpy(dtype=np.float64), order="C")  # a writable copy
    return matrix, [str(c) for c in features.columns]


_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?|(\d{1,2})[/.](\d{1,2})[/.](\d{4})")


def _all_dates(categories: list[str]) -> bool:
    """Whether every category is written as a calendar date (2020-01-31, 2020-01-31 12:00, 31/01/2020, 1.31.2020:
    a four-digit year and a month and day that exist, in either order where the year comes last; 1.10.20 may be a
    version)."""
    for v in categories:
        match = _DATE.fullmatch(str(v).strip())
        if match is None:
            return False
        year, month, day, *_, first, second, _year = match.groups()
        parts = (int(month), int(day)) if year else (int(first), int(second))
        if not any(1 <= m <= 12 and 1 <= d <= 31 for m, d in ((parts,) if year else (parts, parts[::-1]))):
            return False
    return True


def _parse(
    paths: list[Path],
    *,
    sep: str | None,
    header: bool | None,
    label: str | int,
    drop: Sequence[str | int],
    missing: Sequence[str],
    strip: bool,
    comment: str | None,
    label_strip: str,
    sheet: str | int,
    encoding: str,
    decimal: str,
    max_categories: int,
    nominal: Sequence[str | int],
    paper: bool,
) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    frames, wheres, texts, headers, indexed = [], [], [], [], []
    for p in paths:
        frame, has_header, index, where, text = _read_frame(
            p,
            sep=sep,
            # a test file takes the training file's decision: guessed alone, its header line with no row
            # below, or over a column all missing, reads as data
            header=headers[0] if headers else header,
            missing=missing,
            strip=strip,
            comment=comment,
            sheet=sheet,
            encoding=encoding,
            decimal=decimal,
            repeated_ok=paper,  # (the paper reads audit_risk.csv's two Score_B as Score_B, Score_B.1)
        )
        frames.append(frame)
        wheres.append(where)
        texts.append(text)
        headers.append(has_header)
        indexed.append(index)
    _refuse_header_only(frames, paths, headers, header is None, [label, *drop])
    digest = content_digest(*frames)
    columns = list(frames[0].columns)
    for p, f in zip(paths[1:], frames[1:]):
        if list(f.columns) != columns:
            raise ValueError(
                f"{p} has columns {list(map(str, f.columns))}, but {paths[0]} has {list(map(str, columns))}"
            )
    why = _header_hint(texts[0][0], decimal) if header is None and not headers[0] else ""
    dropped = [_column(d, columns, headers[0], paths[0], "drop", why) for d in drop]
    if indexed[0] and columns[0] not in dropped:
        dropped.insert(0, columns[0])  # pandas' index column: row numbers, not a feature
    categorical = {_column(c, columns, headers[0], paths[0], "nominal", why) for c in nominal}
    if categorical & set(dropped):
        raise ValueError(f"{paths[0]}: nominal={list(nominal)} names dropped column(s) {sorted(map(str, categorical & set(dropped)))}")
    kept = [c for c in columns if c not in dropped]
    label_col = _label_column(label, kept, columns, headers[0], paths[0], why, frames)
    if label_col in categorical:
        raise ValueError(f"{paths[0]}: nominal={list(nominal)} names the label column {label_col!r}")
    _refuse_header_as_data(frames, wheres, headers, header is None, label_col, why, paper)
    notes: list[str] = []  # warnings, given after the parse cache (so that a cached load gives them too)
    if header is None and headers[0]:
        _warn_label_like_name(frames, label_col, paths[0], notes)
        _warn_counted_header(frames, wheres, label_col, indexed[0], paths[0], notes)
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    frame = data.drop(columns=dropped)
    where = [w for ws in wheres for w in ws]
    text = [t for ts in texts for t in ts]
    files = np.array([k for k, f in enumerate(frames) for _ in range(len(f))])

    # Labels: stripped of surrounding spaces (as the text loader's), and of label_strip's characters.
    frame[label_col] = frame[label_col].map(
        lambda v: (v.strip().strip(label_strip).strip() or None) if isinstance(v, str) else v
    )  # (a label of spaces only is none)
    labelled = frame[label_col].notna().to_numpy()
    unlabelled = [(int((~labelled & (files == k)).sum()), int((files == k).sum())) for k in range(len(paths))]
    frame = frame.loc[labelled].reset_index(drop=True)
    where = [w for w, keep in zip(where, labelled) if keep]
    text = [t for t, keep in zip(text, labelled) if keep]
    if len(frame) == 0:
        raise ValueError(f"{paths[0]}: no row has a label in column {label_col!r}")
    y, classes, dotted = _labels(frame[label_col], label_col, where, text, paths[0], paper, notes)
    n_first = int(labelled[files == 0].sum())
    # the rows that type the columns: the training file's (every row of a single file: the split comes later,
    # so that they do not change with its seed), or every row (the paper's, before its split)
    fit = np.arange(len(y)) < (len(y) if paper else n_first)
    features = frame.drop(columns=[label_col])
    x, names = _features(
        features, fit, where, text, max_categories=max_categories, decimal=decimal, path=paths[0], paper=paper,
        notes=notes, nominal=categorical,
    )  # fmt: skip
    return {
        "x": torch.from_numpy(x),
        "y": torch.from_numpy(y),
        "n_first": n_first,
        "classes": classes,
        "dotted": dotted,
        "features": names,
        "where": where,
        "label": label_col,
        "unlabelled": unlabelled,  # per file: (rows without a label, rows)
        "digest": digest,
        "warnings": notes,
    }


# --- split, imputation, scaling -----------------------------------------------------------------


def _impute(
    x: torch.Tensor, train_idx: torch.Tensor, n_first: int, impute: str, where: list[str], names: list[str]
) -> tuple[torch.Tensor, list[str], list[str], list[str]]:
    """``x`` imputed, the kept names, the columns dropped (no value in the rows that type the columns: every
    row for ``"mean"``, else the training file's, so that no seed changes the features) and those kept with no
    value in the training rows (a drawn split's: set to the fill value in every row, so they weigh nothing)."""
    missing = torch.isnan(x)
    if impute == "error":
        if missing.any():
            i, j = (int(v) for v in torch.nonzero(missing)[0])
            raise ValueError(
                f"{where[i]}: column {names[j]!r} is missing a value; pass impute='mean' or 'train_mean' "
                "to fill it"
            )
        return x, names, [], []
    rows = x if impute == "mean" else x[train_idx]
    count = (~torch.isnan(rows)).sum(0)
    mean = torch.nansum(rows, 0) / count.clamp(min=1)
    keep = (~missing[: len(x) if impute == "mean" else n_first]).any(0)
    unseen = keep & (count == 0)
    x = torch.where(missing | unseen, mean.expand_as(x), x)
    if not bool(keep.all()):  # (a column dropped; else no second copy of the whole matrix)
        x = x[:, keep]
    dropped = [n for n, k in zip(names, keep.tolist()) if not k]
    return x, [n for n, k in zip(names, keep.tolist()) if k], dropped, [n for n, u in zip(names, unseen.tolist()) if u]


# --- the loader ---------------------------------------------------------------------------------


def load_table(
    path: Path | str,
    *,
    test_path: Path | str | None = None,
    sep: str | None = None,
    header: bool | None = None,
    label: str | int = "last",
    drop: Sequence[str | int] = (),
    missing: Sequence[str] = ("?", ""),
    strip: bool = False,
    comment: str | None = None,
    label_strip: str = "",
    sheet: str | int = 0,
    encoding: str = "utf-8",
    decimal: str = ".",
    max_categories: int = MAX_CATEGORIES,
    nominal: Sequence[str | int] = (),
    impute: str = "train_mean",
    test_fraction: float | None = None,
    split: str = "stratified",
    seed: int = 0,
    standardize: bool = True,
    content_sha256: str | None = None,
    name: str | None = None,
    source: str | None = None,
    cache: bool = True,
    paper_rules: bool = False,
) -> Dataset:
    """A CSV / TSV / whitespace table or an Excel sheet as a tabular ``Dataset`` (module docstring).

    ``path``: the table (the training rows when ``test_path`` is given).  ``label``: ``"last"``,
    ``"first"``, a header name or a 0-based column index.  ``impute``: ``"train_mean"``,
    ``"mean"`` (the EXACT paper's) or ``"error"``.  ``split``: ``"stratified"`` or ``"random"``
    (the EXACT paper's ``train_test_split``); used only without ``test_path``.  ``decimal``: the
    decimal mark of text files' numbers (``","`` for ``1,5``).  ``nominal``: columns (names or positions,
    as ``drop``) read as categories whatever they hold.  ``paper_rules``: the EXACT paper's reading
    where lossbench's differs (module docstring), as the catalog's ``uci-*`` sets load, so that their data
    stay what the studies that stored them saw.  Every error is a one-line ValueError naming the input.
    """
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError(
            "load_table needs pandas (and openpyxl / xlrd for Excel files): pip install 'lossbench[ledger]'"
        ) from None
    paths = [Path(path)] + ([Path(test_path)] if test_path is not None else [])
    for p, what in zip(paths, ("path", "test_path")):
        _check_file(p, what)
    if impute not in IMPUTE:
        raise ValueError(f"impute={impute!r}, expected one of {IMPUTE}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}, expected one of {SPLITS}")
    test_fraction = resolve_test_fraction(test_path, test_fraction)  # (None: the default; refused beside a test file)
    check_split_seed(seed, split)  # (here, before the file is read; the split checks it again)
    if sep == "":
        raise ValueError("sep='' separates nothing; give a delimiter, 'whitespace', or None to pick one")
    if not (isinstance(max_categories, int) and max_categories >= 1):
        raise ValueError(f"max_categories must be a positive int, got {max_categories!r}")
    if not (isinstance(decimal, str) and len(decimal) == 1):
        raise ValueError(f"decimal must be one character, got {decimal!r}")
    if isinstance(missing, str):
        missing = (missing,)
    if isinstance(drop, (str, int)):
        drop = (drop,)
    if isinstance(nominal, (str, int)):
        nominal = (nominal,)
    read = {
        "sep": sep,
        "header": header,
        "label": label,
        "drop": list(drop),
        "missing": list(missing),
        "strip": strip,
        "comment": comment,
        "label_strip": label_strip,
        "sheet": sheet,
        "encoding": encoding,
        "decimal": decimal,
        "max_categories": max_categories,
        "nominal": sorted(nominal, key=repr),  # (the order given changes nothing)
        "paper": bool(paper_rules),
    }

    def parse() -> dict[str, Any]:
        return _parse(paths, **read)

    p = cached("table", {**read, "version": PARSE_VERSION}, paths, parse, cache=cache)
    if content_sha256 is not None and p["digest"] != content_sha256:
        raise ValueError(
            f"{', '.join(map(str, paths))}: the parsed cells have SHA-256 {p['digest']}, expected {content_sha256}; "
            "the file holds different data: delete it to download it again, or pass verify=False"
        )
    if not read["paper"]:  # (the uci-* sets' unlabelled rows are the paper's, told in catalog.py)
        for f, (n, of) in zip(paths, p["unlabelled"]):
            if n:
                warnings.warn(f"{f}: {n} of {of} rows have no label (column {p['label']!r}) and are dropped",
                              stacklevel=2)  # fmt: skip
    for note in p["warnings"]:
        warnings.warn(note, stacklevel=2)
    for plain, dotted in p["dotted"]:
        warnings.warn(f"{', '.join(map(str, paths))}: labels {plain!r} and {dotted!r} differ only by a trailing "
                      "'.'; pass label_strip='.' if they are one class", stacklevel=2)  # fmt: skip
    y = p["y"]
    train_idx, test_idx = _split(y, p["n_first"], paths, p["classes"], split, test_fraction, seed)
    how = (
        f"test file {paths[1]}"
        if test_path is not None
        else f"{split} split, test_fraction={test_fraction:g}, seed={seed}"
    )
    x, names, all_missing, unseen = _impute(p["x"], train_idx, p["n_first"], impute, p["where"], p["features"])
    rows = "row of the training file" if test_path is not None and impute != "mean" else "row"
    if not names:
        dropped = f" ({len(all_missing)} missing in every {rows}, dropped)" if all_missing else ""
        raise ValueError(f"{', '.join(map(str, paths))}: no feature column besides the label column {p['label']!r}"
                         f"{dropped}: nothing to learn from")  # fmt: skip
    if all_missing and not read["paper"]:  # (the catalog tells the uci-* sets' empty columns)
        warnings.warn(f"{paths[0]}: column(s) missing in every {rows}, dropped: {first_few(all_missing)}", stacklevel=2)
    if unseen:
        warnings.warn(f"{paths[0]}: column(s) with no value in the training rows of the {how}, set to one value in "
                      f"every row (they weigh nothing): {first_few(unseen)}", stacklevel=2)  # fmt: skip
    x_train, x_test = x[train_idx], x[test_idx]
    stats = None
    if standardize:
        x_train, x_test, stats = scale(x_train, x_test, min_std=STD_FLOOR if read["paper"] else None)
        constant = [n for n, c in zip(names, stats["constant"].tolist()) if c and n not in unseen]
        if constant and not read["paper"]:
            listed = ", ".join(map(repr, constant[:10])) + (f", ... ({len(constant)} in all)"
                                                            if len(constant) > 10 else "")  # fmt: skip
            warnings.warn(f"{paths[0]}: feature(s) constant in the training rows, centred only (not scaled): "
                          f"{listed}", stacklevel=2)  # fmt: skip
    return Dataset(
        name=name or paths[0].stem,
        task="multiclass",
        x_train=x_train.float(),
        y_train=y[train_idx],
        x_test=x_test.float(),
        y_test=y[test_idx],
        class_names=list(p["classes"]),
        feature_kind="tabular",
        source=source or f"table {', '.join(map(str, paths))}",
        meta={
            "feature_names": names,
            "split": how,
            "train_rows": train_idx,
            "test_rows": test_idx,
            "impute": impute,
            "all_missing_columns_dropped": all_missing,
            "unlabelled_rows": sum(n for n, _ in p["unlabelled"]),
            "standardization": stats,
            "content_sha256": p["digest"],
        },
    )
