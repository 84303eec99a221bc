"""ARFF (Weka) tabular files and MEKA multi-label ARFF files.

Format: https://waikato.github.io/weka-wiki/formats_and_processing/arff_stable/ -- a header of
``@relation``, ``@attribute name type`` (``numeric``/``real``/``integer`` or a nominal
``{v1, v2, ...}``) and ``@data`` rows, dense (comma-separated) or sparse (``{index value,
...}``, omitted entries are 0 -- for a nominal attribute its first declared value).  Names and
values may be quoted with ``'`` or ``"``; ``%`` outside quotes starts a comment, at the start of a
line or after its values (as Weka reads it); ``?`` is a missing value.
An attribute name declared twice and a sparse row whose indices repeat or go down are errors, as in Weka.
``string``, ``date`` and ``relational`` attributes, instance weights and numbers beyond float32's
range (the features' type) are rejected with a clear error.  gzip/bzip2 files are read transparently.

Features are encoded as in ``_tabular``: numeric attributes standardised on the training
split (missing -> training mean), nominal ones one-hot (missing -> all zeros).

ARFF files carry no train/test split: unless a ``test_path`` is given, a seeded stratified
split holds out ``test_fraction`` (default 20 %, the protocol of the EXACT paper's UCI
experiments, Karpukhin et al. 2022); the two exclude each other.

MEKA (Read et al., https://waikato.github.io/meka/) marks multi-label files in the relation
name: ``-C L`` means the first ``L`` attributes are the binary labels, ``-C -L`` the last
``L``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossbench._checks import first_few
from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset, check_test_labels
from lossbench.data._files import finite_float, read_text, split_lines
from lossbench.data._tabular import FLOAT32_MAX, Column, encode_columns
from lossbench.data.splits import check_split_seed, resolve_test_fraction, train_test_indices

NUMERIC_TYPES = ("numeric", "real", "integer")
# Part of the parse-cache key, bumped when entries parsed before may hold what is now refused.  1: attribute
# names declared twice, sparse indices repeated or out of order.
PARSE_VERSION = 1


@dataclass(frozen=True)
class ArffTable:
    """A parsed ARFF file: values are numbers or nominal codes (float64), NaN where missing."""

    relation: str
    columns: list[Column]
    values: torch.Tensor
    line_numbers: torch.Tensor  # the file line of each row, for error messages

    def to_payload(self) -> dict[str, Any]:
        cols = [[c.name, list(c.categories) if c.categories is not None else None] for c in self.columns]
        return {"relation": self.relation, "columns": cols, "values": self.values, "lines": self.line_numbers}

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> ArffTable:
        cols = [Column(n, tuple(c) if c is not None else None) for n, c in p["columns"]]
        return cls(p["relation"], cols, p["values"], p["lines"])


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        body = token[1:-1]
        return re.sub(r"\\(.)", r"\1", body) if "\\" in body else body
    return token


class Quoted(str):
    """A value that was quoted: ``'?'`` is the category ``?``, not a missing value."""


_SPARSE_INDEX = re.compile(r"\s*\d+\s+")  # a sparse entry's index, before its value


def split_values(text: str, where: str, sparse: bool = False) -> list[str]:
    """Comma-separated values, honouring ``'``/``"`` quotes and backslash escapes; unquoted (a quoted one
    as :class:`Quoted`).  ``sparse``: the entries of a sparse row, ``index value``, whose value may be quoted."""
    if "'" not in text and '"' not in text:
        return [v.strip() for v in text.split(",")]
    out, buf, quote, quoted, i = [], [], None, False, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
            else:
                buf.append(ch)
        elif ch in "'\"" and (not (head := "".join(buf)).strip() or (sparse and _SPARSE_INDEX.fullmatch(head))):
            quote, quoted, buf = ch, True, [head.strip(), " "] if head.strip() else []
        elif ch == ",":
            out.append(_value("".join(buf), quoted))
            buf, quoted = [], False
        else:
            buf.append(ch)
        i += 1
    if quote:
        raise ValueError(f"{where}: unterminated {quote} quote")
    out.append(_value("".join(buf), quoted))
    return out


def _value(text: str, quoted: bool) -> str:
    return Quoted(text.strip()) if quoted else text.strip()


def _strip_comment(line: str) -> str:
    """``line`` up to a ``%`` outside quotes (a quote opens a value, as in ``split_values``)."""
    if "%" not in line:
        return line
    quote, prev, i = None, ",", 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch == "%":
            return line[:i]
        elif ch in "'\"" and (prev in ",{" or prev.isspace()):
            quote = ch
        prev, i = ch, i + 1
    return line


def _split_name(rest: str, where: str) -> tuple[str, str]:
    """``name type`` with a possibly quoted name -> (name, type text)."""
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        q = rest[0]
        end = 1
        while end < len(rest) and (rest[end] != q or rest[end - 1] == "\\"):
            end += 1
        if end >= len(rest):
            raise ValueError(f"{where}: unterminated quote in attribute name")
        return _unquote(rest[: end + 1]), rest[end + 1 :].strip()
    parts = rest.split(None, 1)
    brace = parts[0].find("{")
    if brace > 0:  # ("class{yes,no}": Weka reads the brace as a token of its own)
        return parts[0][:brace], rest[brace:].strip()
    if len(parts) < 2:
        raise ValueError(f"{where}: attribute {rest!r} has no type")
    return parts[0], parts[1].strip()


def _parse_attribute(rest: str, where: str) -> Column:
    name, type_text = _split_name(rest, where)
    if type_text.startswith("{"):
        if not type_text.endswith("}"):
            raise ValueError(f"{where}: nominal attribute {name!r} lacks its closing brace")
        values = tuple(map(str, split_values(type_text[1:-1], where)))  # (plain text: the parse cache keeps it)
        if not values or any(v == "" for v in values) or len(set(values)) != len(values):
            raise ValueError(f"{where}: nominal attribute {name!r} has empty or repeated values {values}")
        return Column(name, values)
    kind = type_text.split()[0].lower()
    if kind in NUMERIC_TYPES:
        return Column(name)
    raise ValueError(
        f"{where}: attribute {name!r} has type {type_text!r}; "
        "supported: numeric/real/integer or nominal {...}"
    )


def parse_arff(path: Path | str) -> ArffTable:
    """Parse an ARFF file (see the module docstring); ValueError names the file and line."""
    path = Path(path)
    relation, columns = None, []
    values: list[float] = []
    line_numbers: list[int] = []
    lines = split_lines(read_text(path))
    in_data = False
    converters: list[Any] = []
    declared: dict[str, int] = {}  # attribute name -> its line
    for lineno, raw in enumerate(lines, 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        if not in_data:
            keyword = line.split(None, 1)[0].lower()
            rest = line[len(keyword) :].strip()
            if keyword == "@relation":
                relation = _unquote(rest)
            elif keyword == "@attribute":
                column = _parse_attribute(rest, where)
                if column.name in declared:  # (Weka refuses it: which column a name means would be a guess)
                    raise ValueError(f"{where}: attribute {column.name!r} is declared twice (first on line "
                                     f"{declared[column.name]}); rename one")  # fmt: skip
                declared[column.name] = lineno
                columns.append(column)
            elif keyword == "@data":
                if not columns:
                    raise ValueError(f"{where}: @data before any @attribute")
                in_data = True
                converters = [
                    None if c.categories is None else {v: float(k) for k, v in enumerate(c.categories)}
                    for c in columns
                ]
            else:
                raise ValueError(f"{where}: expected @relation, @attribute or @data, got {line[:40]!r}")
            continue
        row = _parse_sparse(line, columns, where) if line.startswith("{") else split_values(line, where)
        if len(row) != len(columns):
            extra = " (instance weights {w} are not supported)" if row and row[-1].startswith("{") else ""
            raise ValueError(f"{where}: expected {len(columns)} values, got {len(row)}{extra}")
        for token, conv, col in zip(row, converters, columns):
            if token == "?" and not isinstance(token, Quoted):  # ('?' quoted: the category)
                values.append(math.nan)
            elif conv is None:
                values.append(finite_float(token, where, f"attribute {col.name!r}:"))
            else:
                code = conv.get(_unquote(token))
                if code is None:
                    raise ValueError(
                        f"{where}: unknown nominal value {token!r} for attribute {col.name!r} "
                        f"(declared: {', '.join(col.categories)})"
                    )
                values.append(code)
        line_numbers.append(lineno)
    if relation is None or not in_data:
        raise ValueError(f"{path}: not an ARFF file (no @relation / @data section)")
    table = torch.tensor(values, dtype=torch.float64).reshape(len(line_numbers), len(columns))
    return ArffTable(relation, columns, table, torch.tensor(line_numbers, dtype=torch.int64))


_SPARSE_WEIGHT = re.compile(r"\}\s*,\s*\{\s*[-+0-9.eE]+\s*\}$")  # a sparse row's instance weight: "{0 1, 2 x}, {0.5}"


def _parse_sparse(line: str, columns: list[Column], where: str) -> list[str]:
    if _SPARSE_WEIGHT.search(line):
        raise ValueError(f"{where}: sparse row with an instance weight ({line[line.rindex('{'):]}): instance weights are "
                         "not supported")  # fmt: skip
    if not line.endswith("}"):
        raise ValueError(f"{where}: sparse row lacks its closing brace (instance weights are not supported)")
    row = ["0" if c.categories is None else c.categories[0] for c in columns]
    body = line[1:-1].strip()
    previous = -1
    for entry in split_values(body, where, sparse=True) if body else []:
        parts = entry.split(None, 1)
        try:
            index = int(parts[0])
        except ValueError:
            raise ValueError(
                f"{where}: sparse entry {entry!r} does not start with an attribute index"
            ) from None
        if not 0 <= index < len(columns) or len(parts) != 2:
            raise ValueError(f"{where}: bad sparse entry {entry!r} ({len(columns)} attributes)")
        if index <= previous:  # (Weka refuses it: a repeated index would silently keep its last value)
            raise ValueError(f"{where}: sparse entry {entry!r} comes after index {previous}; a sparse row lists each "
                             "attribute index once, in increasing order")  # fmt: skip
        previous = index
        row[index] = Quoted(parts[1]) if isinstance(entry, Quoted) else parts[1]
    return row


def read_arff(path: Path | str, *, cache: bool = True) -> ArffTable:
    """``parse_arff`` through the parse cache."""
    path = Path(path)
    return ArffTable.from_payload(
        cached("arff", {"version": PARSE_VERSION}, [path], lambda: parse_arff(path).to_payload(), cache=cache)
    )


def _check_split(test_path: Path | str | None, test_fraction: float | None, seed: int) -> float:
    """The test fraction to split by (0 with a test file), the arguments checked before any file is read."""
    check_split_seed(seed, "stratified")
    return resolve_test_fraction(test_path, test_fraction)


def _read_tables(path: Path, test_path: Path | str | None, cache: bool) -> list[tuple[Path, ArffTable]]:
    tables = [(path, read_arff(path, cache=cache))]
    if test_path is not None:
        test_path = Path(test_path)
        tables.append((test_path, read_arff(test_path, cache=cache)))
        if tables[1][1].columns != tables[0][1].columns:
            raise ValueError(f"{test_path}: its attributes differ from the training file's {path}")
    for p, t in tables:
        big = torch.nonzero(t.values.abs() > FLOAT32_MAX)
        if len(big):
            i, j = (int(v) for v in big[0])
            value = float(t.values[i, j])
            raise ValueError(f"{p}:{int(t.line_numbers[i])}: attribute {t.columns[j].name!r}: {value!r} is beyond "
                             f"float32's range (±{FLOAT32_MAX:.4g})")  # fmt: skip
    return tables


def _split_features(
    tables: list[tuple[Path, ArffTable]],
    y: torch.Tensor,
    label_cols: list[int],
    test_fraction: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str], str]:
    """Train/test indices (the test file's rows, else a seeded stratified split), encoded
    features of the non-label columns, their names, and a description of the split."""
    columns = tables[0][1].columns
    values = torch.cat([t.values for _, t in tables])
    if len(tables) == 1:
        train_idx, test_idx = train_test_indices(y, test_fraction, seed)
        split = f"stratified {test_fraction:.0%} test split, seed {seed}"
    else:
        n = len(tables[0][1].values)
        train_idx, test_idx = torch.arange(n), torch.arange(n, len(values))
        split = f"test file {tables[1][0]}"
    keep = [j for j in range(len(columns)) if j not in label_cols]
    x_train, x_test, names = encode_columns(values[:, keep], [columns[j] for j in keep], train_idx, test_idx)
    return train_idx, test_idx, x_train, x_test, names, split


def _resolve_attribute(columns: list[Column], attribute: str | int | None, path: Path) -> int:
    if attribute is None:
        return len(columns) - 1
    if isinstance(attribute, int):
        if not -len(columns) <= attribute < len(columns):
            raise ValueError(
                f"class_attribute={attribute} is out of range for {path} ({len(columns)} attributes)"
            )
        return attribute % len(columns)
    names = [c.name for c in columns]
    if attribute not in names:
        raise ValueError(
            f"class_attribute={attribute!r} is not an attribute of {path}; attributes: {', '.join(names)}"
        )
    return names.index(attribute)


def load_arff(
    path: Path | str,
    *,
    test_path: Path | str | None = None,
    class_attribute: str | int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    drop_empty_classes: bool = False,
    name: str | None = None,
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """A single-label ARFF file as a tabular Dataset.

    ``class_attribute``: a name, an index, or None for the last attribute; it must be nominal, and
    hold at least 2 classes in ``path`` (a test file's classes must occur there).  Without
    ``test_path``, a seeded stratified split holds out ``test_fraction`` of the rows.
    The classes are the attribute's declared values, in their order, rows or not (a warning names
    those no row of ``path`` holds: count-based losses refuse a class with no training sample);
    ``drop_empty_classes=True`` keeps only the values rows of ``path`` hold.
    """
    path = Path(path)
    test_fraction = _check_split(test_path, test_fraction, seed)
    tables = _read_tables(path, test_path, cache)
    table = tables[0][1]
    k = _resolve_attribute(table.columns, class_attribute, path)
    cls = table.columns[k]
    if cls.categories is None:
        raise ValueError(
            f"{path}: class attribute {cls.name!r} is numeric; classification needs a nominal one"
        )
    for p, t in tables:
        missing = torch.isnan(t.values[:, k])
        if missing.any():
            raise ValueError(f"{p}:{int(t.line_numbers[missing][0])}: missing class value ('?')")
    y = torch.cat([t.values[:, k] for _, t in tables]).long()
    n = len(table.values)
    present = y[:n].unique().tolist()
    if len(present) < 2:
        held = f"a single class ({cls.categories[present[0]]!r})" if present else "no row"
        raise ValueError(
            f"{path}: class attribute {cls.name!r} holds {held}; a classification table needs at least 2"
        )
    if test_path is not None:
        check_test_labels(y[:n], y[n:], list(cls.categories), f"test_path={str(test_path)!r}")
    classes = list(cls.categories)
    empty = [c for i, c in enumerate(classes) if i not in present]
    if drop_empty_classes:  # (declared order kept: codes renumbered over the values held)
        codes = torch.zeros(len(classes), dtype=torch.long)
        codes[present] = torch.arange(len(present))
        y, classes = codes[y], [classes[i] for i in present]
    elif empty:  # (the default stays: stored studies of the paper's UCI sets have these classes)
        warnings.warn(f"{path}: class attribute {cls.name!r} declares class(es) {first_few(empty)} that no row holds; "
                      "kept as classes without a sample, which count-based losses (balanced_softmax, logit "
                      "adjustment) refuse: drop_empty_classes=True drops them", stacklevel=2)  # fmt: skip
    train_idx, test_idx, x_train, x_test, names, split = _split_features(tables, y, [k], test_fraction, seed)
    return Dataset(
        name=name or table.relation or path.stem,
        task="multiclass",
        x_train=x_train,
        y_train=y[train_idx],
        x_test=x_test,
        y_test=y[test_idx],
        class_names=classes,
        feature_kind="tabular",
        source=source or f"ARFF {path} ({split})",
        meta={"feature_names": names},
    )


def meka_label_count(relation: str) -> int | None:
    """The ``-C`` option of a MEKA relation name (``'Scene: -C 6 -R'`` -> 6), or None."""
    match = re.search(r"(?:^|\s)-C\s+(-?\d+)", relation)
    return int(match.group(1)) if match else None


def load_meka_arff(
    path: Path | str,
    *,
    test_path: Path | str | None = None,
    num_labels: int | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    name: str | None = None,
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """A MEKA multi-label ARFF file as a tabular multilabel Dataset (targets float32 0/1).

    ``num_labels`` overrides the relation's ``-C`` (positive: leading label attributes,
    negative: trailing).  Label attributes must hold only 0/1.  Without ``test_path`` the
    seeded split stratifies on each row's rarest positive label (``stratified_split``).
    """
    path = Path(path)
    test_fraction = _check_split(test_path, test_fraction, seed)
    tables = _read_tables(path, test_path, cache)
    table = tables[0][1]
    c = num_labels if num_labels is not None else meka_label_count(table.relation)
    if c is None:
        raise ValueError(
            f"{path}: relation {table.relation!r} has no MEKA '-C <labels>' option; pass num_labels"
        )
    a = len(table.columns)
    if c == 0 or abs(c) >= a:
        raise ValueError(f"{path}: label count {c} does not fit {a} attributes (need 0 < |C| < {a})")
    label_cols = list(range(c)) if c > 0 else list(range(a + c, a))
    y = torch.cat([_label_matrix(t, label_cols, p, c) for p, t in tables]).float()
    train_idx, test_idx, x_train, x_test, names, split = _split_features(
        tables, y, label_cols, test_fraction, seed
    )
    return Dataset(
        name=name or table.relation.split(":")[0].strip() or path.stem,
        task="multilabel",
        x_train=x_train,
        y_train=y[train_idx],
        x_test=x_test,
        y_test=y[test_idx],
        class_names=[table.columns[j].name for j in label_cols],
        feature_kind="tabular",
        source=source or f"MEKA ARFF {path} ({split})",
        meta={"feature_names": names},
    )


def _label_matrix(table: ArffTable, label_cols: list[int], path: Path, c: int) -> torch.Tensor:
    """The 0/1 label columns as numbers; ValueError at the first row holding anything else."""
    out = []
    for j in label_cols:
        col, raw = table.columns[j], table.values[:, j]
        if col.categories is not None:  # a nominal {0,1}: map codes to the values they name
            numbers = [float(v) if v in ("0", "1") else math.nan for v in col.categories]
            raw = torch.where(
                torch.isnan(raw), raw, torch.tensor(numbers, dtype=torch.float64)[raw.nan_to_num(0).long()]
            )
        bad = ~((raw == 0) | (raw == 1))
        if bad.any():
            line = int(table.line_numbers[bad][0])
            raise ValueError(f"{path}:{line}: label attribute {col.name!r} must be 0 or 1 (MEKA -C {c})")
        out.append(raw)
    return torch.stack(out, 1)
