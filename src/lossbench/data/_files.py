"""Where data lives, and how files are read, verified, downloaded and written.

Locations (first that is set wins):

- data: the ``data_dir`` argument / ``--data-dir``, else ``$LOSSBENCH_DATA_DIR``, else
  ``$XDG_CACHE_HOME/lossbench/data`` (``~/.cache/lossbench/data``);
- parse cache: ``$LOSSBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/lossbench/parsed``.

Compressed files (gzip, bzip2) are recognised by their magic bytes, not their names, and read
transparently.  Every write goes to a temporary file in the target directory first and is
renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import http.client
import io
import math
import os
import re
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lossbench._checks import first_few
from lossbench._paths import atomic_write, expanded, make_private_dirs, read_regular_file, user_cache_root

DATA_DIR_ENV = "LOSSBENCH_DATA_DIR"
CACHE_DIR_ENV = "LOSSBENCH_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 10.0
# Bounds on a file's bytes as downloaded and once decompressed: far above every published data set's (MNIST's
# largest, 47 MB decompressed), far below what a mirror's gzip bomb would take of memory.
DOWNLOAD_LIMIT, DECOMPRESSED_LIMIT = 1 << 30, 4 << 30


def default_data_dir() -> Path:
    """``$LOSSBENCH_DATA_DIR``, else ``~/.cache/lossbench/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return expanded(env) if env else user_cache_root() / "data"


def default_cache_dir() -> Path:
    """``$LOSSBENCH_CACHE_DIR``, else ``~/.cache/lossbench/parsed``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return expanded(env) if env else user_cache_root() / "parsed"


def compression(data: bytes) -> str | None:
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:3] == b"BZh":
        return "bzip2"
    return None


def decompress(data: bytes, path: Path | str) -> bytes:
    """The payload of ``data`` (gzip or bzip2 by magic bytes; anything else is returned as is)."""
    kind = compression(data)
    if kind is None:
        return data
    chunks, size = [], 0
    try:
        buffer = io.BytesIO(data)
        with gzip.GzipFile(fileobj=buffer) if kind == "gzip" else bz2.BZ2File(buffer) as stream:  # (in pieces: a bomb stops at the bound)
            while size <= DECOMPRESSED_LIMIT and (chunk := stream.read(1 << 26)):
                chunks.append(chunk)
                size += len(chunk)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated {kind} file ({err})") from None
    if size > DECOMPRESSED_LIMIT:
        raise ValueError(f"{path}: more than {DECOMPRESSED_LIMIT >> 30} GiB once decompressed, more than any data set")
    return b"".join(chunks)


def unreadable(path: Path | str, err: OSError) -> ValueError:
    """The one-line error for a source file that cannot be opened (or looked at): a missing file, a
    directory, no permission... are the user's mistake, not a traceback."""
    if isinstance(err, FileNotFoundError):
        return ValueError(f"file not found: {path}")
    return ValueError(f"cannot read {path}: {err.strerror or err}")


def read_bytes(path: Path | str) -> bytes:
    """The decompressed content of a regular file (a directory, FIFO or device refused before it is read)."""
    path = Path(path)
    try:
        raw = read_regular_file(path)
    except OSError as err:
        raise unreadable(path, err) from None
    return decompress(raw, path)


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, without hidden ones (names starting with ``.``): the
    ``.ipynb_checkpoints``, ``.git`` and ``.DS_Store`` that tools leave are no class or sample."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_folders(folder: Path, stacklevel: int = 2) -> list[Path]:
    """``folder``'s visible sub-folders, one per class; files beside them, which no loader reads (an image or a
    document is a file in its class's folder), are warned of (``stacklevel`` as for the caller's own warning)."""
    entries = visible_entries(folder)
    if loose := [p for p in entries if not p.is_dir()]:
        warnings.warn(f"{folder}: {len(loose)} file(s) beside the class folders not read: {first_few(p.name for p in loose)}",
                      stacklevel=stacklevel + 1)  # fmt: skip
    return [p for p in entries if p.is_dir()]


def files_below(folder: Path) -> list[Path]:
    """Every regular file below ``folder``, in its sub-folders too (as torchvision's ImageFolder finds a
    class's samples), sorted, hidden names skipped; a folder reached again through a link is read once."""
    found, seen, todo = [], set(), [folder]
    while todo:
        current = todo.pop()
        if current.resolve() in seen:
            continue
        seen.add(current.resolve())
        entries = visible_entries(current)
        found += [p for p in entries if p.is_file()]
        todo += [p for p in reversed(entries) if p.is_dir()]
        if dangling := [p.name for p in entries if p.is_symlink() and not p.exists()]:  # (else left out unsaid)
            warnings.warn(f"{current}: links to nothing skipped: {first_few(dangling)}", stacklevel=3)
    return sorted(found)


def split_lines(text: str) -> list[str]:
    """``text`` split at line ends only (``\\n``, ``\\r\\n``, ``\\r``).  ``str.splitlines`` also splits at
    form feeds, \\x1c-\\x1e, U+2028/U+2029 and \\x85 (a Windows-1252 ellipsis read as Latin-1), which
    would cut a record in two."""
    return _LINE_END.split(text)


_LINE_END = re.compile(r"\r\n|\r|\n")


# Byte-order marks that are no UTF-8 (0xFE, 0xFF never occur in it): such a file is read in its own encoding
# (Windows' "Unicode" text and Excel's "Unicode text" are UTF-16).  (UTF-32-LE's starts with UTF-16-LE's: it comes first.)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # fmt: skip


def utf_bom(data: bytes) -> str | None:
    """The encoding a UTF-16 or UTF-32 byte-order mark at the start of ``data`` names, else None."""
    return next((encoding for mark, encoding in BOMS if data.startswith(mark)), None)


def read_text(path: Path | str) -> str:
    """A (possibly compressed) text file, decoded as UTF-8 (BOM dropped), else as Windows-1252.

    Windows-1252 (Latin-1 but for 0x80-0x9f, where it has curly quotes, dashes and the euro sign where
    Latin-1 has control characters; its five undefined bytes read as Latin-1's) maps every byte to a
    character, so old ARFF/CSV files and Windows' "ANSI" text load instead of failing; UTF-8 is tried
    first because it is strict and the common case.  A file
    whose UTF-8 characters outnumber its bytes that are not UTF-8 (a Latin-1 line pasted into a
    UTF-8 file), or that starts with UTF-8's byte-order mark, is refused where a byte is not UTF-8,
    naming its line: read as Latin-1, every UTF-8 character would turn into two others.  (A Latin-1
    file may hold a pair of bytes that reads as UTF-8, "é" before a no-break space; it is the rarer
    kind there.)  A file that starts with a UTF-16 or UTF-32 byte-order mark is read in that encoding;
    a text that holds a NUL character (UTF-16 without its mark, or no text at all) is refused.
    """
    return no_nul(_decoded(read_bytes(path), path), path)


def _decoded(data: bytes, path: Path | str) -> str:
    """``data`` as :func:`read_text` decodes it (NUL characters not yet checked)."""
    wide = utf_bom(data)
    if wide:
        try:
            return data.decode(wide)
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not {wide.upper()} text after its {wide.upper()} byte-order mark "
                             f"(at byte {err.start}); save it as UTF-8") from None  # fmt: skip
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        characters = _UTF8_CHARACTER.findall(body)
        foreign = len(body.translate(None, _ASCII)) - sum(map(len, characters))  # high bytes outside UTF-8 characters
        if len(characters) > foreign or body is not data:  # (a byte-order mark says UTF-8 too)
            before = body[: err.start]
            line = (before.count(b"\n") if b"\n" in body else before.count(b"\r")) + 1
            raise ValueError(f"{path}:{line}: byte 0x{body[err.start]:02x} is not UTF-8, where the file holds UTF-8 "
                             "characters: it mixes encodings; save it as UTF-8") from None  # fmt: skip
        return data.decode("latin-1").translate(_WINDOWS_1252)


# Latin-1's control characters 0x80-0x9f as Windows-1252 reads those bytes (curly quotes, dashes, the euro sign), but
# for the five it leaves undefined
_WINDOWS_1252 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


def no_nul(text: str, path: Path | str) -> str:
    """``text`` if it holds no NUL character, else a one-line error naming its line."""
    at = text.find("\x00")
    if at >= 0:
        line = len(split_lines(text[:at]))
        raise ValueError(f"{path}:{line}: the text holds a NUL character: UTF-16 text without its byte-order mark, "
                         "or not a text file; save it as UTF-8")  # fmt: skip
    return text


_UTF8_CHARACTER = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_ASCII = bytes(range(128))  # (deleted by translate: what is left are the high bytes)


def finite_float(token: str, where: str, what: str) -> float:
    """``token`` as a finite number; ValueError naming ``where`` (file:line) and ``what`` otherwise.

    ``inf``, ``nan`` and overflowing literals (``1e999``) are refused: one such value makes every
    run on the data diverge.  Missing values have their own spelling (``?``) in each format.
    """
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{where}: {what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {what} {token!r} is not a finite number")
    return value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    """A file a registered dataset needs, where to download it and how to recognise it.

    ``sha256`` holds digests of the decompressed payload (they identify the data whatever
    mirror re-compressed it); ``archive_sha256`` digests of the file exactly as published.
    A file passes verification when either kind matches.  ``member`` names the file inside a
    zip archive when the URLs point to one.  ``urls`` may be empty where no public download
    exists; the error then says where the file comes from (``homepage``).
    """

    name: str
    urls: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()
    archive_sha256: tuple[str, ...] = ()
    member: str | None = None
    homepage: str = ""

    def candidates(self, directory: Path) -> list[Path]:
        """Accepted local names: the published one, and the decompressed one for ``.gz``/``.bz2``."""
        names = [self.name]
        for ext in (".gz", ".bz2"):
            if self.name.endswith(ext):
                names.append(self.name[: -len(ext)])
        return [directory / n for n in names]

    def find(self, directory: Path) -> Path | None:
        return next((p for p in self.candidates(directory) if p.is_file()), None)

    @property
    def source(self) -> str:
        """Where the published file comes from: its URLs, else its homepage."""
        return ", ".join(self.urls) if self.urls else self.homepage or "no public download"

    def check(self, data: bytes, where: str, downloaded: bool = False) -> None:
        """Raise ValueError unless ``data`` (the file's bytes) matches a known digest.

        A file put in place by hand for which no digest can apply (an uncompressed copy of a file
        published only as a compressed archive with unknown payload digest) passes: its format checks
        remain.  A ``downloaded`` one must match: a mirror (over http, say) could send any bytes.
        """
        if not (self.sha256 or self.archive_sha256):
            return
        raw = sha256(data)
        if raw in self.archive_sha256 or raw in self.sha256:
            return
        if compression(data) is not None:
            if self.sha256 and sha256(decompress(data, where)) in self.sha256:
                return
        elif not (self.sha256 or downloaded):
            return
        known = ", ".join((*self.sha256, *self.archive_sha256))
        raise ValueError(
            f"{where}: SHA-256 {raw} matches none of the published checksums ({known}); the file is "
            f"corrupt or a different version: replace it with the published one ({self.source}; deleted, "
            "it is downloaded again where the network allows), or pass verify=False"
        )


class DataUnavailableError(ValueError):
    """A dataset's files are neither present nor downloadable."""


def fetch(rf: RemoteFile, directory: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``rf`` into ``directory`` (each URL tried once), verify it, rename it into place.

    Raises DataUnavailableError with the reason per URL when no URL yields a valid file.
    """
    failures = []
    for url in rf.urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read(DOWNLOAD_LIMIT + 1)
            if len(data) > DOWNLOAD_LIMIT:
                raise ValueError(f"larger than {DOWNLOAD_LIMIT >> 20} MiB, more than any published file")
            if rf.member is not None:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    if archive.getinfo(rf.member).file_size > DOWNLOAD_LIMIT:
                        raise ValueError(f"{rf.member} is larger than {DOWNLOAD_LIMIT >> 20} MiB")
                    data = archive.read(rf.member)
            rf.check(data, url, downloaded=True)
        # (HTTPException: a truncated body raises IncompleteRead, which is no OSError; the next URL is tried)
        except (
            urllib.error.URLError, OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError, ValueError
        ) as err:
            failures.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        dest = directory / rf.name
        try:
            if dest.parent.resolve().is_relative_to(user_cache_root().resolve()):
                make_private_dirs(dest.parent)  # (the user cache's folders stay this user's: see _paths.trusted_dir)
            atomic_write(dest, data)
        except OSError as err:  # (downloaded and checked, but it cannot be kept there: the folder is the matter)
            raise DataUnavailableError(f"{rf.name}: downloaded, but cannot be written to {dest.parent}: "
                                       f"{err.strerror or err}") from None  # fmt: skip
        return dest
    reasons = "; ".join(failures) if failures else "no public download URL"
    raise DataUnavailableError(f"{rf.name}: {reasons}")


def _recognised(rf: RemoteFile) -> str:
    """How a file put in place by hand is recognised: the archive member it is, and its digest."""
    inside = f" (the file {rf.member} in that archive)" if rf.member else ""
    if rf.sha256:  # (of the payload: a .gz file's decompressed)
        return f"{inside}, SHA-256 {rf.sha256[0]}" + (" once decompressed" if rf.name.endswith((".gz", ".bz2")) else "")
    return f"{inside}, SHA-256 of the file as published {rf.archive_sha256[0]}" if rf.archive_sha256 else inside


def missing_files_message(
    dataset: str, directory: Path, missing: Sequence[RemoteFile], reasons: Sequence[str]
) -> str:
    where = "\n".join(f"  {rf.name}: {rf.source}{_recognised(rf)}" for rf in missing)
    tried = ("\nnot downloaded: " + "; ".join(reasons)) if reasons else ""
    return (
        f"dataset {dataset!r}: missing {', '.join(rf.name for rf in missing)} in {directory}{tried}\n"
        f"get the files from:\n{where}\n"
        f"and put them in {directory}, or point --data-dir (data_dir=, ${DATA_DIR_ENV}) at a directory "
        f"holding {directory.name}/ with them"
    )
