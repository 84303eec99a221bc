"""The registry, downloads (file:// URLs), checksums, the parse cache and the datasets command."""

from __future__ import annotations

import http.client
import io
import os
import re
import urllib.error
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import lossbench.data.arff as arff_module
from lossbench.cli import main
from lossbench.data import (
    DATASETS,
    DataUnavailableError,
    RemoteFile,
    _cache,
    load_adult,
    load_arff,
    load_dataset,
    load_idx,
    load_text_table,
)
from lossbench.data._cache import cache_path
from lossbench.data._files import DOWNLOAD_TIMEOUT_S, fetch, sha256
from lossbench.data._registry import DatasetInfo, FileResolver
from tests.permissions import group_writable

from .test_arff import ARFF
from .writers import write


def test_every_entry_documents_itself():
    assert {
        "digits",
        "mnist",
        "fashion-mnist",
        "sst2",
        "adult",
        "car",
        "letter",
        "scene",
        "arff",
        "meka_arff",
    } <= set(DATASETS)
    for name, info in DATASETS.items():
        assert info.summary and info.origin and info.source, name
        for f in info.files:
            assert f.urls or f.homepage, (name, f.name)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnsit'; registered: .*mnist"):
        load_dataset("mnsit")


def test_parameters_are_checked():
    with pytest.raises(
        ValueError,
        match=r"dataset 'iris' has no parameter\(s\) test_size; its parameters: test_fraction, seed",
    ):
        load_dataset("iris", test_size=0.3)
    with pytest.raises(ValueError, match=r"dataset 'arff' needs parameter\(s\) path"):
        load_dataset("arff")


def test_format_entries_take_paths(tmp_path):
    ds = load_dataset("arff", path=str(write(tmp_path / "t.arff", ARFF)), test_fraction=0.5)
    assert ds.num_classes == 2 and len(ds.y_test) == 3


def test_long_tail_option():
    ds = load_dataset("synthetic", n_classes=3, long_tail_rho=4.0)
    counts = ds.class_counts
    assert ds.name == "synthetic-lt4" and counts[0] / counts[2] == pytest.approx(4, rel=0.02)


def remote(tmp_path, payload: bytes, **kw) -> RemoteFile:
    src = write(tmp_path / "server" / "file.bin", payload)
    return RemoteFile("file.bin", (src.as_uri(),), **kw)


def test_fetch_verifies_and_renames_into_place(tmp_path):
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    path = fetch(rf, tmp_path / "data")
    assert path.read_bytes() == b"payload" and os.listdir(tmp_path / "data") == ["file.bin"]


def test_fetch_rejects_a_checksum_mismatch_and_leaves_nothing(tmp_path):
    rf = remote(tmp_path, b"tampered", sha256=(sha256(b"payload"),))
    with pytest.raises(DataUnavailableError, match=r"file.bin: .*SHA-256 [0-9a-f]{64} matches none"):
        fetch(rf, tmp_path / "data")
    assert not (tmp_path / "data").exists() or os.listdir(tmp_path / "data") == []


def test_a_download_that_cannot_be_written_is_one_line_naming_the_folder(tmp_path):
    # downloaded and checked, but the data folder is a file (or read-only, or full): the OSError came as a traceback
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    blocker = write(tmp_path / "data", "a file where the data folder should be")
    with pytest.raises(DataUnavailableError, match=rf"^file.bin: downloaded, but cannot be written to {blocker}: "):
        fetch(rf, blocker)


def test_fetch_extracts_a_zip_member(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("SET/train.tsv", "a\tb\n")
    src = write(tmp_path / "server" / "set.zip", buf.getvalue())
    rf = RemoteFile("train.tsv", (src.as_uri(),), sha256=(sha256(b"a\tb\n"),), member="SET/train.tsv")
    assert fetch(rf, tmp_path / "data").read_text() == "a\tb\n"


def test_compressed_file_verifies_by_payload(tmp_path):
    data = write(tmp_path / "x.gz", b"payload", "gzip").read_bytes()
    RemoteFile("x.gz", sha256=(sha256(b"payload"),)).check(data, "x.gz")
    with pytest.raises(ValueError, match=r"x.gz: SHA-256 .* pass verify=False"):
        RemoteFile("x.gz", sha256=(sha256(b"other"),)).check(data, "x.gz")


def test_a_download_must_match_a_digest_where_a_copy_placed_by_hand_passes_on_its_format(tmp_path):
    """Published only compressed, with no payload digest (Fashion-MNIST): an uncompressed file placed by hand
    passes on its format checks, a downloaded one (a mirror over http could send anything) does not."""
    archive = write(tmp_path / "x.gz", b"payload", "gzip").read_bytes()
    rf = RemoteFile("x.gz", archive_sha256=(sha256(archive),))
    rf.check(b"forged", "placed by hand")
    rf.check(archive, "the published archive", downloaded=True)
    with pytest.raises(ValueError, match=r"downloaded: SHA-256 .* matches none"):
        rf.check(b"forged", "downloaded", downloaded=True)
    server = write(tmp_path / "server" / "x.gz", b"forged")
    with pytest.raises(DataUnavailableError, match="matches none"):
        fetch(RemoteFile("x.gz", (server.as_uri(),), archive_sha256=(sha256(archive),)), tmp_path / "data")


def test_a_download_or_a_payload_past_its_bound_is_refused_before_it_fills_memory(tmp_path, monkeypatch):
    from lossbench.data import _files

    bomb = write(tmp_path / "bomb.gz", b"\0" * 5000, "gzip").read_bytes()  # (a gzip bomb in small)
    monkeypatch.setattr(_files, "DECOMPRESSED_LIMIT", 4096)
    with pytest.raises(ValueError, match="bomb.gz: more than 0 GiB once decompressed"):
        _files.decompress(bomb, "bomb.gz")
    assert _files.decompress(write(tmp_path / "ok.gz", b"\0" * 4096, "gzip").read_bytes(), "ok.gz") == b"\0" * 4096
    monkeypatch.setattr(_files, "DOWNLOAD_LIMIT", 3)
    server = write(tmp_path / "server" / "file.bin", b"payload")
    with pytest.raises(DataUnavailableError, match="larger than 0 MiB"):
        fetch(RemoteFile("file.bin", (server.as_uri(),), sha256=(sha256(b"payload"),)), tmp_path / "data")


def test_failed_download_says_where_to_put_the_files(tmp_path, monkeypatch):
    seen = []

    def offline(url, timeout):
        seen.append(timeout)
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(err.value)
    for text in (
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "mnist"),
        "--data-dir",
        "network unreachable",
        "https://ossci-datasets",
    ):
        assert text in message
    assert seen and all(t == DOWNLOAD_TIMEOUT_S <= 30 for t in seen)  # one short try per mirror
    assert len(seen) == 2


def test_no_download_url_explains_the_source(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"scene.arff.bz2: MEKA's datasets"):
        load_dataset("scene", data_dir=tmp_path)


def test_resolver_downloads_then_verifies_once(tmp_path, monkeypatch):
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    info = DatasetInfo(
        "toy", "files", lambda resolve: None, "multiclass", "tabular", "s", "o", files=(rf,), subdir="toy"
    )
    resolver = FileResolver(info, tmp_path / "data" / "toy", download=True, verify=True)
    path = resolver("file.bin")
    checks = []
    with monkeypatch.context() as m:
        m.setattr(RemoteFile, "check", lambda self, data, where: checks.append(where))
        assert resolver("file.bin") == path and checks == []  # this file version already passed
    path.write_bytes(b"changed!")
    # one line that names the file and where the published one comes from
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*matches none of the published checksums.*"
                       f"replace it with the published one \\({re.escape(rf.urls[0])}[^\n]*$"):
        resolver("file.bin")


def test_parse_cache_hits_and_invalidates(tmp_path, fresh_cache, monkeypatch):
    path = write(tmp_path / "t.arff", ARFF)
    calls = []
    real = arff_module.parse_arff
    monkeypatch.setattr(arff_module, "parse_arff", lambda p: calls.append(p) or real(p))
    a = load_arff(path)
    b = load_arff(path)
    assert len(calls) == 1 and torch.equal(a.x_train, b.x_train)
    entries = list(fresh_cache.iterdir())
    assert [e.name for e in entries] == [
        cache_path("arff", {"version": arff_module.PARSE_VERSION}, [path]).name
    ]  # written atomically: no temp files
    write(path, ARFF.replace("6.0, green", "6.5, green"))
    c = load_arff(path)
    assert len(calls) == 2 and not torch.equal(c.x_train, a.x_train)
    load_arff(path, cache=False)
    assert len(calls) == 3
    # another file of the same size and mtime (cp -p, rsync -t): parsed again, not served from the cache
    before = path.stat()
    other = write(tmp_path / "other.arff", ARFF.replace("6.5, green", "6.1, green"))
    other.replace(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    d = load_arff(path)
    assert len(calls) == 4 and not torch.equal(d.x_train, c.x_train)


def test_the_parse_cache_removes_its_least_recently_used_entries_past_its_limit(tmp_path, fresh_cache, monkeypatch):
    sources = [write(tmp_path / f"{name}.txt", name) for name in "abcd"]
    built = []
    build = lambda k: lambda: built.append(k) or {"x": torch.zeros(256)}  # noqa: E731
    for k in range(3):
        _cache.cached("toy", {}, [sources[k]], build(k))
    entries = [_cache.cache_path("toy", {}, [s]) for s in sources]
    size = entries[0].stat().st_size
    for k, entry in enumerate(entries[:3]):  # written in that order, a, b, c; then a is read: b is the least recent
        os.utime(entry, ns=(k * 10**9, k * 10**9))
    _cache.cached("toy", {}, [sources[0]], build(0))
    assert built == [0, 1, 2] and entries[0].stat().st_mtime_ns > 2 * 10**9  # a hit marks its entry used
    own = fresh_cache / "my-model.pt"  # (a file of the user's own in the folder: never an entry to remove)
    torch.save({"w": torch.zeros(4096)}, own)
    os.chmod(own, 0o600)
    os.utime(own, ns=(0, 0))
    monkeypatch.setattr(_cache, "CACHE_LIMIT_BYTES", 3 * size)
    _cache.cached("toy", {}, [sources[3]], build(3))  # a fourth entry: one must go
    assert [e.exists() for e in entries] == [True, False, True, True]
    monkeypatch.setattr(_cache, "CACHE_LIMIT_BYTES", size // 2)  # an entry larger than the limit is kept alone
    _cache.cached("toy", {}, [sources[1]], build(1))
    assert built == [0, 1, 2, 3, 1] and [e.exists() for e in entries] == [False, True, False, False]
    assert sorted(p.name for p in fresh_cache.iterdir()) == sorted([entries[1].name, own.name])  # (no temporary file)


@pytest.mark.parametrize("damage", [b"garbage", b"hello world" * 10, "a list"], ids=["short", "KeyError", "no dict"])
def test_unreadable_cache_entry_is_rebuilt_with_a_warning(tmp_path, fresh_cache, damage):
    path = write(tmp_path / "t.arff", ARFF)
    load_arff(path)
    entry = cache_path("arff", {"version": arff_module.PARSE_VERSION}, [path])
    if damage == "a list":
        torch.save([1, 2], entry)
    else:  # (b"hello world" * 10 made torch.load raise KeyError: 101, which went through as a traceback)
        entry.write_bytes(damage)
    damaged = entry.read_bytes()
    with pytest.warns(UserWarning, match="unreadable parse cache"):
        ds = load_arff(path)
    assert len(ds.y_train) == 5 and entry.read_bytes() != damaged


# --- a cache folder another user could write is neither read nor written (as the kernel cache) ------


def shared_cache(tmp_path, monkeypatch) -> Path:
    """The parse cache at ``shared/cache`` (not made yet), with no warning given so far."""
    monkeypatch.setattr(_cache, "_WARNED", set(), raising=False)  # (warned once per process)
    cache = tmp_path / "shared" / "cache"
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(cache))
    return cache


def make_untrusted(cache: Path, kind: str) -> str:
    """``cache`` made a place another user could write, as ``kind`` says; the reason expected."""
    if kind == "group-writable":
        group_writable(cache)
        return rf"{cache} is writable by its group \(mode drwxrwx---\)"
    if kind == "world-writable parent":
        cache.parent.chmod(0o777)
        return rf"{cache.parent} is writable by its group and other users \(mode drwxrwxrwx\) without the sticky bit"
    if os.geteuid() != 0:
        pytest.skip("making a directory of another uid needs root")
    os.chown(cache, 12345, 12345)
    return rf"{cache} is owned by uid 12345, (not by|neither) you \(uid 0\)"  # (the cache, or above verified/)


KINDS = ["group-writable", "world-writable parent", "other owner"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_untrusted_parse_cache_is_neither_read_nor_written(tmp_path, monkeypatch, kind):
    cache = shared_cache(tmp_path, monkeypatch)
    source = write(tmp_path / "source.txt", "x")
    def build():
        return {"v": "parsed"}

    assert _cache.cached("toy", {}, [source], build) == {"v": "parsed"}
    entry = _cache.cache_path("toy", {}, [source])
    stored = torch.load(entry, weights_only=True)
    torch.save({**stored, "payload": {"v": "planted"}}, entry)
    assert _cache.cached("toy", {}, [source], build) == {"v": "planted"}  # a private cache serves its entries
    reason = make_untrusted(cache, kind)
    with pytest.warns(UserWarning, match=rf"^lossbench: not using the parse cache {cache}: {reason}; ") as seen:
        assert _cache.cached("toy", {}, [source], build) == {"v": "parsed"}
    assert len(seen) == 1
    assert torch.load(entry, weights_only=True)["payload"] == {"v": "planted"}  # not rewritten either
    assert sorted(p.name for p in cache.iterdir()) == [entry.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not at every load
        assert _cache.cached("toy", {}, [source], build) == {"v": "parsed"}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_or_stamp_of_another_user_in_a_trusted_cache_is_not_taken(tmp_path, monkeypatch):
    # (a folder whose group is this user's private one, while another account has that group as its primary
    # group, let that account replace entries: whatever lets a file in, one not this user's is not taken)
    shared_cache(tmp_path, monkeypatch)
    source = write(tmp_path / "source.txt", "x")

    def build():
        return {"v": "parsed"}

    _cache.cached("toy", {}, [source], build)
    entry = _cache.cache_path("toy", {}, [source])
    torch.save({**torch.load(entry, weights_only=True), "payload": {"v": "planted"}}, entry)
    os.chown(entry, 12345, 12345)
    with pytest.warns(UserWarning, match=r"unreadable parse cache .*not a cache entry of yours \(owner uid 12345"):
        assert _cache.cached("toy", {}, [source], build) == {"v": "parsed"}
    assert entry.stat().st_uid == 0  # (rewritten: this user's again)
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    info = DatasetInfo("toy", "files", lambda resolve: None, "multiclass", "tabular", "s", "o", files=(rf,), subdir="toy")
    resolver = FileResolver(info, tmp_path / "data" / "toy", download=True, verify=True)
    path = resolver("file.bin")
    path.write_bytes(b"changed!")
    stamp = _cache._trusted_cache("verified") / _cache._key(_cache.fingerprint([path]), rf.sha256, rf.archive_sha256)
    stamp.write_bytes(b"")
    os.chown(stamp, 12345, 12345)
    with pytest.raises(ValueError, match="matches none of the published checksums"):
        resolver("file.bin")


def test_nothing_is_created_below_a_cache_parent_anyone_can_write(tmp_path, monkeypatch):
    cache = shared_cache(tmp_path, monkeypatch)
    cache.parent.mkdir()
    make_untrusted(cache, "world-writable parent")
    with pytest.warns(UserWarning, match=f"not using the parse cache {cache}: {cache.parent} is writable"):
        assert load_arff(write(tmp_path / "t.arff", ARFF)).num_classes == 2
    assert list(cache.parent.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_verified_stamp_in_an_untrusted_cache_skips_no_checksum(tmp_path, monkeypatch, kind):
    cache = shared_cache(tmp_path, monkeypatch)
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    info = DatasetInfo(
        "toy", "files", lambda resolve: None, "multiclass", "tabular", "s", "o", files=(rf,), subdir="toy"
    )
    resolver = FileResolver(info, tmp_path / "data" / "toy", download=True, verify=True)
    path = resolver("file.bin")
    path.write_bytes(b"changed!")
    # Another user plants the stamp that says this changed file passed.
    stamp = cache / "verified" / _cache._key(_cache.fingerprint([path]), rf.sha256, rf.archive_sha256)
    stamp.write_bytes(b"")
    reason = make_untrusted(cache, kind)
    with (
        pytest.warns(UserWarning, match=f"not using the parse cache {cache}: {reason}"),
        pytest.raises(ValueError, match="matches none of the published checksums"),
    ):
        resolver("file.bin")


def test_datasets_command_lists_every_dataset(capsys, tmp_path):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == set(DATASETS)
    assert "built-in" in lines["iris"] and "no (4/4 files missing)" in lines["mnist"]
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in lines["mnist"]


def test_datasets_command_loads_named_sets(capsys):
    assert main(["datasets", "iris", "wine"]) == 0
    out = capsys.readouterr().out
    assert "iris: multiclass, tabular (4,); train 120, test 30" in out and "wine:" in out


def test_under_umask_002_the_caches_lossbench_makes_stay_trusted(tmp_path, monkeypatch):
    """Folders lossbench makes in the user cache are 0700 each, parents too: made with the umask's mode
    (0775 under umask 002) they would fail the trust rule, and every load would parse afresh."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("LOSSBENCH_CACHE_DIR", raising=False)
    monkeypatch.delenv("LOSSBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr(_cache, "_WARNED", set(), raising=False)
    rf = remote(tmp_path, b"payload", sha256=(sha256(b"payload"),))
    info = DatasetInfo("toy", "files", lambda resolve: None, "multiclass", "tabular", "s", "o", files=(rf,), subdir="toy")
    mask = os.umask(0o002)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "not using the parse cache"
            FileResolver(info, info.directory(), download=True, verify=True)("file.bin")  # a download made the root first
            source = write(tmp_path / "source.txt", "x")
            assert _cache.cached("toy", {}, [source], lambda: {"v": 1}) == {"v": 1}
    finally:
        os.umask(mask)
    made = [home, home / "lossbench", home / "lossbench" / "data", home / "lossbench" / "parsed"]
    assert [oct(p.stat().st_mode & 0o777) for p in made] == [oct(0o700)] * len(made)
    entries = [p for p in (home / "lossbench" / "parsed").rglob("*") if p.is_file()]  # the parse and a verified stamp
    assert len(entries) == 2 and {oct(p.stat().st_mode & 0o777) for p in entries} == {oct(0o600)}  # (not the group's)


@pytest.mark.parametrize(
    "load",
    [
        lambda d: load_arff(d / "nope.arff"),
        lambda d: load_text_table(d / "nope.tsv"),
        lambda d: load_adult(d / "nope.data", d / "nope.test"),
        lambda d: load_idx(*(d / f"nope{i}" for i in range(4))),
    ],
    ids=["arff", "text_table", "adult", "idx"],
)
def test_a_missing_source_is_one_line_through_the_parse_cache(tmp_path, fresh_cache, load):
    # the cache's fingerprint looks at the file before any parse: read_bytes's error, not a traceback
    with pytest.raises(ValueError, match="^file not found: " + re.escape(str(tmp_path / "nope"))):
        load(tmp_path)


def test_datasets_command_refuses_a_missing_file_in_one_line(capsys, tmp_path):
    assert main(["datasets", "arff", f"path={tmp_path / 'nope.arff'}"]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.endswith(f"file not found: {tmp_path / 'nope.arff'}")


def test_a_truncated_download_tries_the_next_url(tmp_path, monkeypatch):
    class Truncated(io.BytesIO):
        def read(self, *args):
            raise http.client.IncompleteRead(b"pay", 4)  # no OSError: it escaped the mirror loop

    def urlopen(url, timeout):
        return Truncated() if url.startswith("https://first") else io.BytesIO(b"payload")

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    urls = ("https://first.invalid/file.bin", "https://second.invalid/file.bin")
    path = fetch(RemoteFile("file.bin", urls, sha256=(sha256(b"payload"),)), tmp_path / "data")
    assert path.read_bytes() == b"payload"
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Truncated())
    with pytest.raises(DataUnavailableError, match=r"https://first.invalid/file.bin: IncompleteRead\(3 bytes"):
        fetch(RemoteFile("file.bin", urls[:1], sha256=(sha256(b"payload"),)), tmp_path / "data2")


def test_the_default_data_folder_is_read_only_where_no_other_user_could_change_it(tmp_path, monkeypatch):
    # another user who made (or may write) the default data folder could change its files or plant links
    # that send a download elsewhere; a folder named by data_dir is the user's own choice
    xdg = tmp_path / "shared"
    (xdg / "lossbench" / "data").mkdir(parents=True)
    xdg.chmod(0o777)  # (no sticky bit: anyone may swap lossbench/ for their own)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.delenv("LOSSBENCH_DATA_DIR", raising=False)
    with pytest.raises(DataUnavailableError, match=rf"dataset 'uci-car': not reading the default data folder "
                                                    rf"{xdg}/lossbench/data: {xdg} is writable by .* point --data-dir"):  # fmt: skip
        load_dataset("uci-car", download=False)
    with pytest.raises(DataUnavailableError, match="missing car/car.data in"):  # (the named folder is read: no files there)
        load_dataset("uci-car", tmp_path / "mine", download=False)
    xdg.chmod(0o1777)  # sticky, as /tmp: what this user made there stays theirs
    with pytest.raises(DataUnavailableError, match="missing car/car.data in"):
        load_dataset("uci-car", download=False)


@pytest.mark.parametrize("params, message", [({"n_samples": -5}, "n_samples must be an int >= 2"),
                                             ({"n_samples": 10**14}, r"n_samples x n_features must be at most")])  # fmt: skip
@pytest.mark.parametrize("name", ["synthetic", "synthetic_multilabel"])
def test_a_synthetic_sets_counts_are_checked_in_one_line(name, params, message):
    # (scikit-learn's traceback, or numpy's MemoryError for 14 PiB)
    with pytest.raises(ValueError, match=message):
        load_dataset(name, **params)
