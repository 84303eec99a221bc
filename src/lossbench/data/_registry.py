"""The dataset registry and ``load_dataset``.

Three kinds of entries:

- ``builtin``: needs no files (scikit-learn's bundled sets, synthetic sets);
- ``files``: a real dataset whose files live in ``<data_dir>/<subdir>/`` and are downloaded
  (each URL tried once, short timeout, SHA-256 verified, renamed into place) when absent;
- ``format``: a file format for your own data; its parameters name the paths.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossbench._paths import untrusted_reason
from lossbench.data._cache import verify_once
from lossbench.data._dataset import Dataset
from lossbench.data._files import (
    DATA_DIR_ENV,
    DataUnavailableError,
    RemoteFile,
    default_data_dir,
    fetch,
    missing_files_message,
)
from lossbench.data.splits import long_tail
from lossbench.registry import Registry

KINDS = ("builtin", "files", "format")


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset or format.

    ``loader`` is called as ``loader(**params)``, and for ``files`` entries as
    ``loader(resolve, **params)`` where ``resolve(file_name) -> Path`` finds (downloads,
    verifies) one of ``files``.
    """

    name: str
    kind: str
    loader: Callable[..., Dataset]
    task: str
    feature_kind: str
    summary: str
    origin: str
    files: tuple[RemoteFile, ...] = ()
    subdir: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind={self.kind!r}, expected one of {KINDS}")
        if (self.kind == "files") != bool(self.files and self.subdir):
            raise ValueError(f"dataset {self.name!r}: files and subdir go together with kind='files'")

    @property
    def source(self) -> str:
        """Where the data comes from: download URLs, else the origin."""
        if self.kind != "files":
            return self.origin
        # One entry per download location: an archive's URL, else the folder of the files.
        places = {
            u if u.endswith(".zip") else u.rsplit("/", 1)[0] + "/" for f in self.files for u in f.urls[:1]
        }
        homepages = {f.homepage for f in self.files if not f.urls and f.homepage}
        return "; ".join(sorted(places)) or f"{self.origin}; {'; '.join(sorted(homepages))}"

    def params(self) -> dict[str, Any]:
        """The loader's parameters with their defaults (``inspect.Parameter.empty`` if required)."""
        sig = inspect.signature(self.loader).parameters
        return {
            n: p.default
            for n, p in sig.items()
            if p.kind == p.KEYWORD_ONLY or (self.kind != "files" and p.kind == p.POSITIONAL_OR_KEYWORD)
        }

    def directory(self, data_dir: str | Path | None = None) -> Path:
        return (
            Path(data_dir).expanduser() / self.subdir
            if data_dir is not None
            else default_data_dir() / self.subdir
        )

    def missing(self, data_dir: str | Path | None = None) -> list[RemoteFile]:
        directory = self.directory(data_dir)
        return [f for f in self.files if f.find(directory) is None]

    def availability(self, data_dir: str | Path | None = None) -> str:
        if self.kind == "builtin":
            return "built-in"
        if self.kind == "format":
            return "your files"
        missing = self.missing(data_dir)
        return "yes" if not missing else f"no ({len(missing)}/{len(self.files)} files missing)"

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise ValueError(f"dataset {self.name!r} has no file {name!r}")


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return DATASETS.add(info.name, info)


def get_dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


class FileResolver:
    """Finds a registered dataset's files, downloading and verifying them on first use."""

    def __init__(self, info: DatasetInfo, directory: Path, download: bool, verify: bool) -> None:
        self.info, self.directory, self.download, self.verify = info, directory, download, verify
        self.unchecked: list[Path] = []  # downloaded now with no digest of their bytes: checked by their content

    def drop_unchecked(self) -> None:
        """Delete the files downloaded now that no digest of their bytes checked, where their content failed
        the loader's check: kept, a later load (verify=False, say) would take them as they are."""
        for path in self.unchecked:
            path.unlink(missing_ok=True)

    def __call__(self, name: str) -> Path:
        rf = self.info.file(name)
        path = rf.find(self.directory)
        if path is None:
            missing = [f for f in self.info.files if f.find(self.directory) is None]
            if not (self.download and rf.urls):
                reasons = [] if self.download else ["downloads disabled (download=False)"]
                raise DataUnavailableError(
                    missing_files_message(self.info.name, self.directory, missing, reasons)
                )
            try:
                path = fetch(rf, self.directory)
            except DataUnavailableError as err:
                raise DataUnavailableError(
                    missing_files_message(self.info.name, self.directory, missing, [str(err)])
                ) from None
            if not (rf.sha256 or rf.archive_sha256):
                self.unchecked.append(path)
        if self.verify:
            verify_once(path, rf)
        return path


def _check_default_data_dir(name: str) -> None:
    """The default data folder (in the user's cache) holds what was downloaded for them: read from, and
    downloaded into, only where no other user could change it (the parse cache's rule).  A folder named
    by --data-dir or $LOSSBENCH_DATA_DIR is the user's choice (a shared, read-only copy, say)."""
    folder = default_data_dir()
    if reason := untrusted_reason(folder):
        raise DataUnavailableError(
            f"dataset {name!r}: not reading the default data folder {folder}: {reason}: another user could change "
            f"its files, or what is downloaded into it; put the files in a folder of your own and point --data-dir "
            f"(data_dir=, ${DATA_DIR_ENV}) at it"
        )


def load_dataset(
    name: str,
    /,  # positional only: a loader's own ``name=`` parameter (idx, arff, table, ...) reaches it
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    verify: bool = True,
    long_tail_rho: float | None = None,
    long_tail_seed: int = 0,
    **params: Any,
) -> Dataset:
    """Load a registered dataset (or a format with its paths in ``params``) into memory.

    ``data_dir``: where ``files`` datasets live (``<data_dir>/<subdir>/``); default
    ``$LOSSBENCH_DATA_DIR`` or ``~/.cache/lossbench/data``.  ``download``: fetch missing
    files (otherwise a missing file is an error saying where to put it).  ``verify``: check
    files against their published SHA-256 (once per file version).  ``long_tail_rho``:
    subsample the training split to the exponential long-tail profile (``long_tail``).
    Other ``params`` go to the loader (``DATASETS.get(name).params()`` lists them).
    """
    info = DATASETS.get(name)
    accepted = info.params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) or "none"
        raise ValueError(
            f"dataset {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {listed}"
        )
    required = [
        p for p, default in accepted.items() if default is inspect.Parameter.empty and p not in params
    ]
    if required:
        raise ValueError(f"dataset {name!r} needs parameter(s) {', '.join(required)}")
    if info.kind == "files":
        if data_dir is None and not os.environ.get(DATA_DIR_ENV):
            _check_default_data_dir(name)
        ds = info.loader(FileResolver(info, info.directory(data_dir), download, verify), **params)
    else:
        ds = info.loader(**params)
    if long_tail_rho is not None:
        ds = long_tail(ds, long_tail_rho, long_tail_seed)
    return ds
