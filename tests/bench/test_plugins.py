"""A spec's plugins: the user's modules, imported by name wherever the spec is loaded."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lossbench.bench.spec import SpecError, parse_spec
from lossbench.bench.storage import default_storage_url, run_record, study_name
from tests.permissions import grant_acl, group_writable

from .conftest import ROOT

PLUGIN = "lb_test_plugin"  # a name no installed package has
# Registers a dataset and a model that exist nowhere else: a process that runs the spec imported it.
PLUGIN_CODE = textwrap.dedent("""
    import torch
    from torch import nn

    from lossbench.data import Dataset, DatasetInfo, register_dataset
    from lossbench.models import ModelInfo, register_model


    def blobs(seed: int = 0) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(64, 3, generator=g)
        y = (x[:, 0] > 0).long()
        return Dataset("plugin_blobs", "multiclass", x[:48], y[:48], x[48:], y[48:], ["neg", "pos"], "tabular", "test plugin")


    def linear(dataset, num_outputs):
        return nn.Linear(dataset.input_shape[0], num_outputs)


    register_dataset(DatasetInfo("plugin_blobs", "builtin", blobs, "multiclass", "tabular", "blobs", "test plugin"))
    register_model(ModelInfo("plugin_linear", linear, ("tabular",), (), "test plugin", "a linear layer"))
""")

SPEC = f"""
name = "plugged"
plugins = ["{PLUGIN}"]
trials = 2
seeds = 2
sampler = "random"
heartbeat_interval = 1

[train]
model = "plugin_linear"
epochs = 1
batch_size = 16

[[datasets]]
name = "plugin_blobs"

[[methods]]
name = "ce"
loss = "cross_entropy"

[[methods]]
name = "hinge"
loss = "hinge"
"""


def minimal(**more):
    return {"name": "s", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}], **more}


@pytest.mark.parametrize("name", ["my-plugin", "../plugin", "/tmp/plugin", "a..b", "a.", "class", "", 3])
def test_a_plugin_name_that_is_no_module_name_is_refused(name):
    with pytest.raises(SpecError, match="is not a module name"):
        parse_spec(minimal(plugins=[name]))


@pytest.mark.parametrize("name", ["unittest.__main__", "__main__"])
def test_a_packages_main_is_no_plugin(name):
    # importing pip.__main__ or unittest.__main__ runs that program with lossbench's own arguments
    with pytest.raises(SpecError, match="is a package's __main__, a program"):
        parse_spec(minimal(plugins=[name]))


def test_a_missing_plugin_is_one_line_naming_it():
    with pytest.raises(
        SpecError,
        match=r"plugin 'lb_no_such_plugin': no module 'lb_no_such_plugin' on this process's sys.path",
    ):
        parse_spec(minimal(plugins=["lb_no_such_plugin"]))


def test_a_plugin_that_fails_to_import_is_one_line_and_leaves_nothing_registered(tmp_path, monkeypatch):
    # (a traceback; and what it registered before failing stayed: the fixed plugin, imported again in the same
    # process, met "model ... is already registered")
    from lossbench.models import MODELS

    folder = tmp_path / "plugins"
    folder.mkdir(mode=0o700)
    module = folder / "lb_half_registered.py"
    register = 'register_model(ModelInfo("{}", lambda ds, k: nn.Linear(ds.input_shape[0], k), ("tabular",), (), "-", "-"))'
    head = "from torch import nn\nfrom lossbench.models import ModelInfo, register_model\n"
    (folder / "lb_half_helper.py").write_text(head + register.format("lb_half_b") + "\n")  # (a module of one's own)
    body = head + "import lb_half_helper\n" + register.format("lb_half_a") + '\nraise RuntimeError("a bug in the second model")\n'
    module.write_text(body)
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(SpecError, match=rf"plugin 'lb_half_registered' failed to import: RuntimeError: a bug in the "
                                        rf"second model \(at {module}:5\)$"):  # fmt: skip
        parse_spec(minimal(plugins=["lb_half_registered"]))
    assert not {"lb_half_a", "lb_half_b"} & set(MODELS.names()) and not {"lb_half_registered", "lb_half_helper"} & set(sys.modules)
    module.write_text(body.replace('raise RuntimeError("a bug in the second model")', ""))  # fixed: imports
    try:
        parse_spec(minimal(plugins=["lb_half_registered"]))
        assert {"lb_half_a", "lb_half_b"} <= set(MODELS.names())  # (the module it imports registered again too)
    finally:
        for name in ("lb_half_a", "lb_half_b"):
            MODELS.remove(name)
        for name in ("lb_half_registered", "lb_half_helper"):
            sys.modules.pop(name, None)
    (folder / "lb_half_syntax.py").write_text("def broken(:\n")
    with pytest.raises(SpecError, match=r"plugin 'lb_half_syntax' failed to import: SyntaxError: .*line 1\)$"):
        parse_spec(minimal(plugins=["lb_half_syntax"]))


def plant(folder: Path, name: str) -> Path:
    """A plugin module in ``folder`` (made 0700 where missing) that raises if its code ever runs."""
    folder.mkdir(mode=0o700, exist_ok=True)
    module = folder / f"{name}.py"
    module.write_text("raise RuntimeError('planted code ran')\n")
    return module


def refused_unrun(monkeypatch, folder: Path, name: str, match: str) -> None:
    """Plugin ``name``, on sys.path from ``folder``, is refused with ``match`` and its code never runs."""
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(SpecError, match=match):
        parse_spec(minimal(plugins=[name]))
    assert name not in sys.modules


def test_a_plugin_in_a_folder_every_user_may_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    plant(shared, "lb_planted")
    shared.chmod(0o777)
    refused_unrun(monkeypatch, shared, "lb_planted", "which is writable by its group and other users")


def test_a_plugin_in_a_folder_a_shared_group_may_write_is_refused(tmp_path, monkeypatch):
    """As the caches' rule: a group other than the user's private one may write there."""
    shared = tmp_path / "shared"
    plant(shared, "lb_group_planted")
    group_writable(shared)
    refused_unrun(monkeypatch, shared, "lb_group_planted", "which is writable by its group")


def test_a_plugin_file_another_user_may_write_through_an_acl_is_refused(tmp_path, monkeypatch):
    """The mode (-rw-r--r--, or -rw-rw---- with a mask) hides a named user's write access; the ACL shows it."""
    folder = tmp_path / "mine"
    grant_acl(plant(folder, "lb_acl_planted"), uid=12345, perm=0o6)
    refused_unrun(monkeypatch, folder, "lb_acl_planted", "which is writable by user 12345 through its ACL")


def test_a_module_a_plugin_imports_from_a_folder_others_may_write_is_refused(tmp_path, monkeypatch):
    # the plugin's own package is safe; a subpackage its code imports is not
    mine = tmp_path / "mine"
    sub = mine / "lb_pkg_planted" / "sub"
    sub.mkdir(parents=True)
    (mine / "lb_pkg_planted" / "__init__.py").write_text("from lb_pkg_planted.sub import planted\n")
    (sub / "__init__.py").write_text("")
    (sub / "planted.py").write_text("raise RuntimeError('planted code ran')\n")
    sub.chmod(0o777)
    monkeypatch.syspath_prepend(str(mine))
    with pytest.raises(SpecError, match=r"module 'lb_pkg_planted.sub', which plugin 'lb_pkg_planted' imports, is "
                                        "found in .*sub, which is writable by its group and other users"):  # fmt: skip
        parse_spec(minimal(plugins=["lb_pkg_planted"]))
    assert "lb_pkg_planted.sub.planted" not in sys.modules
    sub.chmod(0o755)
    for name in [m for m in sys.modules if m.startswith("lb_pkg_planted")]:  # (a failed import leaves its parents)
        del sys.modules[name]
    with pytest.raises(SpecError, match="failed to import: RuntimeError: planted code ran"):  # now its code runs (and
        parse_spec(minimal(plugins=["lb_pkg_planted"]))  # raises, as written)


@pytest.mark.parametrize("where", ["a folder above", "its __pycache__"])
def test_a_plugin_others_could_swap_or_recompile_is_refused(where, tmp_path, monkeypatch):
    top = tmp_path / "top"
    folder = top / "mine"
    folder.mkdir(parents=True)
    name = "lb_swappable" if where == "a folder above" else "lb_recompiled"
    (folder / f"{name}.py").write_text("VALUE = 1\n")
    if where == "a folder above":
        top.chmod(0o777)  # not sticky: anyone may rename mine/ and put another folder there
    else:
        (folder / "__pycache__").mkdir()
        (folder / "__pycache__").chmod(0o777)  # a planted .pyc of the right size and time would run
    refused_unrun(monkeypatch, folder, name, "writable by its group and other users")
    top.chmod(0o777 | stat.S_ISVTX)  # sticky (as /tmp): folders in it stay their owners'
    if where == "a folder above":
        parse_spec(minimal(plugins=[name]))
        assert sys.modules.pop(name).VALUE == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="gives a folder to another user (root only)")
@pytest.mark.parametrize("owned", ["the module", "a folder above"])
def test_a_plugin_another_user_owns_or_could_swap_is_refused(owned, tmp_path, monkeypatch):
    top = tmp_path / "top"
    folder = top / "theirs"
    folder.mkdir(parents=True)
    (folder / "lb_owned.py").write_text("VALUE = 1\n")
    os.chown(folder / "lb_owned.py" if owned == "the module" else top, 1234, 1234)  # (mode 755: only they may write)
    refused_unrun(monkeypatch, folder, "lb_owned", "which user 1234 owns" if owned == "the module" else "top is owned by uid 1234")
    # the owner of this Python or of lossbench (an environment an administrator keeps) is trusted already
    from lossbench import _paths
    from lossbench.bench import plugins

    for module in (plugins, _paths):  # (the plugin's own places, and the folders above it)
        monkeypatch.setattr(module, "trusted_owners", lambda: {0, os.getuid(), 1234})
    parse_spec(minimal(plugins=["lb_owned"]))
    assert sys.modules.pop("lb_owned").VALUE == 1


def test_a_command_that_only_reads_a_storage_imports_no_plugin_unasked(tmp_path, monkeypatch):
    from lossbench.bench.plugins import reading_only

    (tmp_path / "lb_reader_plugin.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with reading_only(), pytest.raises(SpecError, match=r"imports plugins \['lb_reader_plugin'\].*--plugins"):
        parse_spec(minimal(plugins=["lb_reader_plugin"]))
    assert not (tmp_path / "ran").exists()
    parse_spec(minimal(plugins=["lb_reader_plugin"]))  # asked: imported
    assert (tmp_path / "ran").exists() and sys.modules.pop("lb_reader_plugin")
    with reading_only():  # one already imported runs no new code
        parse_spec(minimal(plugins=["json"]))



def test_a_run_compares_with_a_stored_spec_without_importing_its_plugins(tmp_path, monkeypatch):
    """On a shared storage another user's spec under the same name may name any module: told apart
    by its plugins, unparsed, so that running one's own spec imports nothing of theirs."""
    import json

    from lossbench.bench.storage import SPEC_ATTR, register_spec

    (tmp_path / "lb_foreign_plugin.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    storage = optuna.storages.InMemoryStorage()
    register_spec(storage, parse_spec(minimal(plugins=["json"])))
    study = optuna.load_study(study_name="s", storage=storage)
    stored = json.loads(study.user_attrs[SPEC_ATTR])
    study.set_user_attr(SPEC_ATTR, json.dumps({**stored, "plugins": ["lb_foreign_plugin"]}))
    with pytest.raises(SpecError, match=r"different spec \(plugins \['lb_foreign_plugin'\] against \[\]\)"):
        register_spec(storage, parse_spec(minimal()))
    assert not (tmp_path / "ran").exists() and "lb_foreign_plugin" not in sys.modules


def test_a_running_worker_refuses_a_stored_spec_rewritten_with_other_plugins_unread(tmp_path, monkeypatch):
    """Between its packs a worker checks the stored spec (another worker may have grown it): one that
    another user rewrote to name other plugins is refused before it is parsed."""
    import json

    import torch

    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import FINGERPRINT_ATTR, SPEC_ATTR, open_storage

    (tmp_path / "lb_rewritten_plugin.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = parse_spec(minimal(trials=1, seeds=2, sampler="random"))
    storage = open_storage(default_storage_url(tmp_path / "out"), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))
    study = optuna.load_study(study_name="s", storage=storage)
    stored = json.loads(study.user_attrs[SPEC_ATTR])
    study.set_user_attr(SPEC_ATTR, json.dumps({**stored, "plugins": ["lb_rewritten_plugin"]}))
    study.set_user_attr(FINGERPRINT_ATTR, "another")
    with pytest.raises(SpecError, match=r"the stored spec is not this one \(plugins \['lb_rewritten_plugin'\] against \[\]\)"):
        runner._check_spec()
    assert not (tmp_path / "ran").exists() and "lb_rewritten_plugin" not in sys.modules

def test_the_plugins_field_keeps_stored_fingerprints_and_round_trips():
    from lossbench.bench.spec import spec_from_json

    plain = parse_spec(minimal())
    assert "plugins" not in plain.to_json()  # a spec stored before the field existed keeps its fingerprint
    plugged = parse_spec(minimal(plugins=["json"]))  # any importable module will do
    assert plugged.plugins == ("json",) and spec_from_json(plugged.to_json()) == plugged
    assert plugged.fingerprint() != plain.fingerprint()


def lossbench(*args: str, plugin_dir=None) -> subprocess.Popen:
    paths = [str(ROOT / "src")] + ([str(plugin_dir)] if plugin_dir else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    return f"exit {proc.returncode}\n{out}"


REGISTER = "import sys; from lossbench.bench.spec import load_spec; from lossbench.bench.storage import open_storage, register_spec; register_spec(open_storage(sys.argv[2]), load_spec(sys.argv[1]))"


@pytest.mark.slow
def test_a_spec_with_plugins_runs_under_a_worker_in_another_process(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{PLUGIN}.py").write_text(PLUGIN_CODE)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    url = default_storage_url(tmp_path / "out")
    # The spec is stored by one process (which imports the plugin to check the spec); this test's
    # process never imports it, so the worker's registrations are its own.
    stored = finished(lossbench("-c", REGISTER, str(spec_path), url, plugin_dir=plugins))
    assert stored.startswith("exit 0"), stored

    # A worker not told the spec's plugins refuses the spec unread (a shared storage's spec may name any
    # module, and importing one runs it); one whose environment lacks the plugin says so; neither runs anything.
    untold = finished(lossbench("-m", "lossbench", "worker", "plugged", "--storage", url, plugin_dir=plugins))
    assert untold.startswith("exit 2") and (f"plugins ['{PLUGIN}'] against []); refused unread; if you trust them, give --plugin {PLUGIN}, in this order"
                                           in untold), untold
    alone = finished(lossbench("-m", "lossbench", "worker", "plugged", "--plugin", PLUGIN, "--storage", url))
    assert alone.startswith("exit 2") and f"plugin '{PLUGIN}': no module '{PLUGIN}'" in alone, alone

    worker = lossbench("-m", "lossbench", "worker", "plugged", "--plugin", PLUGIN, "--storage", url, plugin_dir=plugins)
    printed = finished(worker)
    assert printed.startswith("exit 0") and "study 'plugged' is complete" in printed, printed
    for method in ("ce", "hinge"):
        for stage, count in (("tune", 2), ("final", 2)):
            study = optuna.load_study(
                study_name=study_name("plugged", stage, "plugin_blobs", method), storage=url
            )
            done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
            assert len(done) == count
            assert {run_record(t)["worker"] for t in done} == {f"{socket.gethostname()}:{worker.pid}"}
    assert PLUGIN not in sys.modules
    # The report of a study whose spec names plugins imports them only when told to.
    out = str(tmp_path / "report")
    refused = finished(lossbench("-m", "lossbench", "report", "--storage", url, "--out", out, plugin_dir=plugins))
    assert refused.startswith("exit 2") and "study 'plugged': stored spec: the spec imports plugins" in refused and "--plugins" in refused, refused
    written = finished(lossbench("-m", "lossbench", "report", "--storage", url, "--out", out, "--plugins", plugin_dir=plugins))
    assert written.startswith("exit 0") and (tmp_path / "report" / "report.md").is_file(), written


def _fresh(monkeypatch, *modules):
    """Forget these modules, so that the next import reads their files as a new process would."""
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_study_resumes_only_under_the_plugin_code_it_ran(tmp_path, monkeypatch):
    import torch

    from lossbench.bench.plugins import code_digests
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import CODE_ATTR, open_storage
    from lossbench.models import MODELS

    package = tmp_path / "lb_digest_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        from lossbench.models import ModelInfo, register_model

        from .layers import build

        register_model(ModelInfo("digest_linear", build, ("tabular",), (), "test plugin", "a linear layer"))
    """))
    layers = package / "layers.py"
    layers.write_text("from torch import nn\n\n\ndef build(dataset, num_outputs):\n    return nn.Linear(dataset.input_shape[0], num_outputs)\n")
    (tmp_path / "lb_digest_other.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = ("lb_digest_plugin", "lb_digest_plugin.layers", "lb_digest_other")
    _fresh(monkeypatch, *modules)

    def spec():
        return parse_spec(minimal(name="plugged", plugins=["lb_digest_plugin"], trials=1, seeds=2, sampler="random",
                                  train={"model": "digest_linear", "epochs": 1}))  # fmt: skip

    try:
        storage = open_storage(default_storage_url(tmp_path / "out"), 10)
        Runner(spec(), storage, torch.device("cpu")).run()
        stored = optuna.load_study(study_name="plugged", storage=storage).user_attrs[CODE_ATTR]
        assert stored == code_digests(["lb_digest_plugin"]) and len(stored["lb_digest_plugin"]) == 16
        import lb_digest_other  # noqa: F401  (a module of the same folder imported later is not the plugin's code)

        Runner(spec(), storage, torch.device("cpu"))  # the same code: it resumes

        layers.write_text(layers.read_text().replace("num_outputs)", "num_outputs, bias=False)"))  # a submodule edited
        Runner(spec(), storage, torch.device("cpu"))  # (this process still runs the code it loaded: it may go on)
        _fresh(monkeypatch, *modules)  # another process: it loads the edited code
        MODELS.remove("digest_linear")
        trials = len(storage.get_all_trials(storage.get_study_id_from_name(study_name("plugged", "tune", "wine", "ce"))))
        with pytest.raises(SpecError, match=r"plugin 'lb_digest_plugin': its code differs from the code study 'plugged' "
                                            r"was run with .*give the spec a new name"):  # fmt: skip
            Runner(spec(), storage, torch.device("cpu"))
        assert optuna.load_study(study_name="plugged", storage=storage).user_attrs[CODE_ATTR] == stored  # nothing written
        assert len(storage.get_all_trials(storage.get_study_id_from_name(study_name("plugged", "tune", "wine", "ce")))) == trials
    finally:
        if "digest_linear" in MODELS:
            MODELS.remove("digest_linear")


def test_a_plugin_digest_reads_the_modules_beside_it_that_its_import_loaded(tmp_path, monkeypatch):
    # a plain-module plugin whose model class lives in a module of its own beside it
    from lossbench.bench.plugins import code_digests, import_plugins

    (tmp_path / "lb_beside_plugin.py").write_text("from lb_beside_arch import WIDTH\n")
    arch = tmp_path / "lb_beside_arch.py"
    arch.write_text("WIDTH = 16\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = ("lb_beside_plugin", "lb_beside_arch")
    _fresh(monkeypatch, *modules)
    import_plugins(["lb_beside_plugin"])
    first = code_digests(["lb_beside_plugin"])
    arch.write_text("WIDTH = 256\n")
    _fresh(monkeypatch, *modules)
    import_plugins(["lb_beside_plugin"])
    assert code_digests(["lb_beside_plugin"]) != first
    # json, imported before lossbench saw it: its top-level package's files only, the same for any of
    # its modules, and not another package's
    json_digest = code_digests(["json"])["json"]
    assert json_digest == code_digests(["json.decoder"])["json.decoder"] != code_digests(["csv"])["csv"]


def test_local_workers_are_told_the_specs_plugins_in_order():
    # `run --jobs N` with a spec that names plugins: its workers, told none, refused the stored spec unread
    import argparse

    from lossbench.cli import _local_workers

    args = argparse.Namespace(pack=64, threads=1, device="cpu", data_dir=None, jobs=3, out="out")
    workers = _local_workers(args, "study", "sqlite:///x.db", ("b_plugin", "a_plugin"))
    command = workers.command()
    assert command[command.index("worker"):] == [
        "worker", "--pack", "64", "--threads", "1", "--device", "cpu", "--plugin", "b_plugin", "--plugin", "a_plugin",
        "--", "study",
    ]  # fmt: skip
