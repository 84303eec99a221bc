"""Spec checks added for issue 17 that are not a bad-input table row (tests/test_bad_inputs.py has
those): what stays allowed, the storage's limits, and the split check on its own."""

from __future__ import annotations

import re
import sqlite3
import threading
import types

import optuna
import pytest
import torch

from lossbench.bench.methods import check_validation_part, resolve_method
from lossbench.bench.spec import SpecError, load_preset, load_spec, parse_spec, spec_from_json
from lossbench.bench.storage import STORAGE_ENV, check_sqlite_file, open_storage, register_spec, storage_url

BASE = {"name": "s", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}


def spec(**changes):
    return parse_spec({**BASE, **changes})


def test_the_default_metric_stands_for_each_tasks_headline():
    both = ["wine", "synthetic_multilabel"]
    assert spec(datasets=both).selection_metric == "accuracy"  # micro-F1 on the multi-label set
    assert spec(datasets=both, selection_metric="macro_f1").selection_metric == "macro_f1"
    assert spec(datasets=["synthetic_multilabel"], selection_metric="map").selection_metric == "map"
    with pytest.raises(SpecError, match="selection_metric 'balanced_accuracy' does not exist for multilabel dataset"):
        spec(datasets=both, selection_metric="balanced_accuracy")


def test_a_method_may_name_a_dataset_by_name_or_label():
    datasets = [{"name": "wine", "label": "vino"}, "digits"]
    for only in (["vino"], ["wine"], ["digits", "vino"]):
        spec(datasets=datasets, methods=[{"name": "ce", "loss": "cross_entropy", "datasets": only}])


def test_search_order_is_kept_for_the_python_random_sampler():
    assert load_preset("exact-table1").search_order


def test_directory_given_as_spec(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file .*: Is a directory"):
        load_spec(tmp_path)


def test_settings_that_do_tune_stay_allowed():
    exact = {"name": "ex", "loss": "exact", "params": {"sigma": 10, "estimator": "genz", "samples": 16},
             "search": {"loss.standardize": {"choices": [False, True]}, "loss.sigma_min": {"low": 0.01, "high": 0.1}}}  # fmt: skip
    flooded = {"name": "fl", "loss": "cross_entropy", "transforms": ["flooding"], "search": {"flooding.b": {"low": 0.0, "high": 0.2}}}
    for method in spec(methods=[exact, flooded]).methods:
        resolve_method(method)


def test_study_names_must_fit_optunas_column():
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    fits = MAX_INDEXED_STRING_LENGTH - len("s:final:wine:")
    register_spec(optuna.storages.InMemoryStorage(), spec(methods=[{"name": "m" * fits, "loss": "cross_entropy"}]))
    long = spec(methods=[{"name": "m" * (fits + 1), "loss": "cross_entropy"}])
    with pytest.raises(SpecError, match=f"has {MAX_INDEXED_STRING_LENGTH + 1} characters; Optuna stores at most"):
        register_spec(optuna.storages.InMemoryStorage(), long)


def test_a_new_spec_name_is_refused_what_windows_cannot_name_a_folder_a_stored_one_is_read():
    with pytest.raises(SpecError, match="name must be a name every system can use for a file .*got 'what\\?'"):
        spec(name="what?")
    with pytest.raises(SpecError, match="name must not be a name Windows keeps for a device .*got 'aux.quick'"):
        spec(name="aux.quick")
    stored = spec(name="what").to_json().replace('"what"', '"what?"')
    assert spec_from_json(stored).name == "what?"  # (a study stored before the check: still reported)
    assert spec(datasets=[{"name": "wine", "label": "wine?"}]).datasets[0].label == "wine?"  # (its plots: a slug)


def test_two_units_may_not_spell_one_study_name():
    # a ':' in a method's name and in a data set's parameters spelled two units' study names alike: the second
    # unit's runs were the first's (its leaderboard row showed the other method's runs), silently
    datasets = [{"name": "wine", "label": "wine[a="}, {"name": "wine", "params": {"a": ":"}}]
    methods = [{"name": "]:ce", "loss": "hinge", "datasets": ["wine[a="]},
               {"name": "ce", "loss": "cross_entropy", "datasets": ["wine[a=:]"]}]  # fmt: skip
    with pytest.raises(SpecError, match=re.escape("method 'ce' on 'wine[a=:]' and method ']:ce' on 'wine[a=' would "
                                                  "share the study 's:final:wine[a=:]:ce'")):  # fmt: skip
        register_spec(optuna.storages.InMemoryStorage(), spec(datasets=datasets, methods=methods))
    methods[0]["name"] = "hinge"
    register_spec(optuna.storages.InMemoryStorage(), spec(datasets=datasets, methods=methods))


def test_a_label_spelled_from_parameters_holds_no_control_characters():
    # (an explicit label is one plain name; one spelled from the parameters reached the terminal and reports raw)
    with pytest.raises(SpecError, match=r"datasets\[0\]: its label 'wine\[a=x\\x1b\[1m\]', spelled from its parameters, "
                                        "holds non-printable characters; give it a label"):  # fmt: skip
        spec(datasets=[{"name": "wine", "params": {"a": "x\x1b[1m"}}])
    stored = spec(datasets=[{"name": "wine", "params": {"a": "x"}}]).to_json().replace('"x"', '"x\\u001b[1m"')
    assert spec_from_json(stored).datasets[0].params == {"a": "x\x1b[1m"}  # (stored before the check: still read)
    assert spec(datasets=[{"name": "wine", "params": {"a": "x\x1b[1m"}, "label": "w"}]).datasets[0].label == "w"


def test_storage_url_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert storage_url(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'lossbench.db'}"
    with pytest.raises(SpecError, match=f"pass --storage URL or set \\${STORAGE_ENV}"):
        storage_url(None, None)
    monkeypatch.setenv(STORAGE_ENV, "sqlite:///env.db")
    assert storage_url(None, tmp_path) == storage_url(None, None) == "sqlite:///env.db"
    assert storage_url("sqlite:///given.db", tmp_path) == "sqlite:///given.db"


def test_cli_names_the_same_environment_variable():
    from lossbench import cli

    assert cli.STORAGE_ENV == STORAGE_ENV


def test_a_file_another_worker_is_creating_is_waited_for(tmp_path, monkeypatch):
    """Several local workers may start on a fresh folder at once: an empty file made a moment ago
    is a database being created, not a broken one."""
    from lossbench.bench import storage

    # A grace far beyond the timer's 0.2 s: on a loaded machine the timer may fire seconds late, and
    # the test is that the check waits for the file to be written, not how long the grace is.
    monkeypatch.setattr(storage, "EMPTY_FILE_GRACE_S", 300.0)
    db = tmp_path / "lossbench.db"
    db.touch()

    def create():
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()

    timer = threading.Timer(0.2, create)
    timer.start()
    try:
        check_sqlite_file(db, create=False)
    finally:
        timer.join()
    open_storage(f"sqlite:///{db}", create=False)


def split(y_fit, y_eval, names=("a", "b", "c")):
    data = types.SimpleNamespace(class_names=list(names))
    return types.SimpleNamespace(y_fit=torch.tensor(y_fit), y_eval=torch.tensor(y_eval, dtype=torch.long), task="multiclass",
                                 num_classes=len(names), dataset=data)  # fmt: skip


def test_validation_part_holds_every_class_that_can_be_split():
    s = spec(val_fraction=0.2)
    check_validation_part(split([0, 0, 1, 1, 2], [0, 1]), s, "d")  # class 'c' has one sample: it stays in training
    with pytest.raises(SpecError, match=r"d: val_fraction = 0.2 is too small for class 'b' \(3 training samples\).* >= 0.333"):
        check_validation_part(split([0, 0, 1, 1, 1], [0]), s, "d")
    with pytest.raises(SpecError, match="leaves no validation sample out of 5"):
        check_validation_part(split([0, 0, 1, 1, 1], []), s, "d")
    check_validation_part(split([0, 0, 1, 1, 1], [0]), spec(val_split="random"), "d")  # random: classes may miss
    # rare classes of long-tailed data (2 samples each, 2 % of the samples together) are left to the warning
    # that the part scoring the runs lacks them; a larger share is a val_fraction too small
    rare = split([0] * 156 + [1, 1, 2, 2], [0] * 40, names=("a", "b", "c"))
    check_validation_part(rare, s, "d")
    with pytest.raises(SpecError, match=r"too small for class 'b' \(2 training samples\)"):
        check_validation_part(split([0] * 150 + [1, 1, 2, 2], [0] * 40, names=("a", "b", "c")), s, "d")


def test_momentum_with_an_optimizer_that_ignores_it_is_refused():
    base = {"name": "m", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}
    with pytest.raises(SpecError, match="momentum applies to the sgd optimizer only"):
        parse_spec({**base, "train": {"optimizer": "adam", "momentum": 0.5}})
    parse_spec({**base, "train": {"optimizer": "adam"}})  # the default is no setting of the user's


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"train": {"optimizer": "adam", "momentum": 0.9}}, "momentum applies to the sgd optimizer only"),
     ({"train": {"lr_final": 0.0, "lr_schedule": "step"}}, "lr_schedule shapes the lr's decay to lr_final"),
     ({"train": {"lr_final": 0.0, "lr_schedule": "epoch"}}, "lr_schedule shapes the lr's decay to lr_final"),
     ({"datasets": ["wine", "synthetic_multilabel"], "selection_metric": "accuracy"},
      r"selection_metric 'accuracy' does not exist for multilabel dataset .*leave selection_metric out .*\(micro_f1 here\)")],
)  # fmt: skip
def test_a_setting_the_study_ignores_is_refused_where_written_even_at_its_default(changes, message):
    with pytest.raises(SpecError, match=message):
        spec(**changes)
    left_out = {k: v for k, v in changes.items() if k != "selection_metric"}
    if "train" in changes:
        left_out["train"] = {k: v for k, v in changes["train"].items() if k not in ("momentum", "lr_schedule")}
    # Left out, it is accepted; its stored form, which writes every key at its value, is read back
    accepted = spec(**left_out)
    assert spec_from_json(accepted.to_json()) == accepted


def test_a_bad_middle_of_the_search_space_is_blamed_on_itself():
    from lossbench.bench.runner import Runner

    spec = parse_spec({"name": "wd", "trials": 2, "seeds": 2, "search": {"weight_decay": {"low": -1.0, "high": 0.5}},
                       "train": {"epochs": 1}, "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    with pytest.raises(SpecError, match=r"the middle of the search space .* weight_decay must be finite and >= 0, got -0.25"):
        Runner(spec, optuna.storages.InMemoryStorage(), torch.device("cpu"))


def test_a_bad_fixed_parameter_is_named_as_the_methods_own():
    from lossbench.bench.runner import Runner

    spec = parse_spec({"name": "fx", "trials": 2, "seeds": 2, "train": {"epochs": 1}, "datasets": ["wine"],
                       "methods": [{"name": "exact", "loss": "exact", "params": {"sigma": -1.0}}]})  # fmt: skip
    with pytest.raises(SpecError, match=r"with the method's fixed parameters \{'loss.sigma': -1.0\} is refused: sigma"):
        Runner(spec, optuna.storages.InMemoryStorage(), torch.device("cpu"))


def test_a_search_order_name_nothing_searches_is_refused_before_any_work():
    # a misspelt name would leave the draws in another order, silently; a registered hyperparameter of
    # a method the spec leaves out (a claim keeping some of a protocol's methods) stays allowed
    from lossbench.bench.runner import Runner

    base = {"name": "order", "sampler": "python-random", "trials": 2, "datasets": ["wine"],
            "search": {"lr": {"choices": [0.1, 1.0]}, "weight_decay": {"choices": [0.0, 0.01]}},
            "methods": [{"name": "ce", "loss": "cross_entropy"}]}  # fmt: skip
    with pytest.raises(SpecError, match=r"search_order names \['weigth_decay'\], which no method searches"):
        Runner(parse_spec({**base, "search_order": ["lr", "weigth_decay"]}), optuna.storages.InMemoryStorage(), torch.device("cpu"))
    Runner(parse_spec({**base, "search_order": ["weight_decay", "loss.epsilon", "lr"]}), optuna.storages.InMemoryStorage(),
           torch.device("cpu"))  # fmt: skip


def test_a_sqlite_url_is_parsed_as_a_url(tmp_path):
    # the default URL quotes its folder: a '?' or '%' there is part of the path, not a query string or an escape
    from lossbench.bench.storage import check_storage_url, default_storage_url, sqlite_path

    for name in ("a?b=1", "p%20q", "~x", "at@c:d#e"):
        (tmp_path / name).mkdir()
        assert sqlite_path(default_storage_url(tmp_path / name)) == (tmp_path / name / "lossbench.db").resolve()
    assert sqlite_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert sqlite_path("postgresql://u@h/db") is None and sqlite_path("not a url") is None
    for url, expected in [(f"sqlite:///{tmp_path}/x.db?timeout=60", "takes no query string"),
                          ("sqlite:///~/x.db", "write the path out"), ("sqlite+pysqlite://", "in memory"),
                          ("sqlite:///", "in memory")]:  # fmt: skip
        for check in (check_storage_url, open_storage):  # (open_storage: a storage opened from Python)
            with pytest.raises(SpecError, match=f"^storage {re.escape(repr(url))}.*{expected}"):
                check(url)
    assert list(tmp_path.glob("x.db*")) == []


@pytest.mark.parametrize("folder_writable", [True, False])
def test_a_database_that_cannot_be_written_is_read_and_refused_for_writers(tmp_path, monkeypatch, folder_writable):
    """A database that cannot be written (read-only media) is refused, before any work, to a command
    that writes, and read by one that reads; where no shared-memory file can be made for its
    write-ahead log the file is read as immutable, and a log left beside it is refused with the reason.
    (Root writes anywhere the mode allows: the test says what cannot be written.)"""
    from lossbench.bench import storage as storage_module
    from lossbench.ledger.runs import LEDGER_STUDY, _ledger_attrs

    url = f"sqlite:///{tmp_path}/x.db"
    writer = open_storage(url)
    optuna.create_study(storage=writer, study_name="kept").set_user_attr("a", 1)
    writer.engine.dispose()  # the last connection folds the log into the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
    monkeypatch.setattr(storage_module, "_writable", lambda path: folder_writable and path == tmp_path)
    for writes in ({}, {"heartbeat_interval": 30}, {"create": False}):
        with pytest.raises(SpecError, match=r"x.db cannot be written \(read-only file, folder or file system\) and this"):
            open_storage(url, **writes)
    reader = open_storage(url, create=False, reading=True)
    assert optuna.load_study(storage=reader, study_name="kept").user_attrs == {"a": 1}
    assert _ledger_attrs(reader) == {}  # (no ledger study there: read as none, not created)
    assert LEDGER_STUDY not in optuna.get_all_study_names(reader)
    reader.engine.dispose()
    for name in ("x.db-shm", "x.db-wal"):  # (SQLite's read-only check made them: this folder is writable)
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "x.db-wal").write_bytes(b"\0" * 32)
    if folder_writable:  # SQLite makes the shared-memory file itself, and finds no valid log frame in it
        open_storage(url, create=False, reading=True).engine.dispose()
    else:
        with pytest.raises(SpecError, match="its write-ahead log x.db-wal cannot be read there without its x.db-shm file"):
            open_storage(url, create=False, reading=True)


def test_compare_refuses_a_storage_in_memory_before_any_work(tmp_path):
    from lossbench.bench.api import compare

    x, y = torch.randn(40, 3), torch.arange(40) % 2
    with pytest.raises(SpecError, match="^storage 'sqlite://' is a SQLite database in memory"):
        compare((x, y), methods=["cross_entropy"], out=tmp_path / "out", storage="sqlite://", trials=2, seeds=2, epochs=1)
    assert not (tmp_path / "out").exists()


def test_a_review_of_specs_finds_each_of_these_refused_in_one_line_before_any_work():
    import copy

    base = {"name": "t", "trials": 2, "seeds": 2, "train": {"model": "mlp", "epochs": 1},
            "datasets": [{"name": "wine"}], "methods": [{"name": "ce", "loss": "cross_entropy"}]}  # fmt: skip
    cases = [
        (lambda d: d.update(search={"model": {"width": {"low": 4, "high": 8}}}), r'quote it \("model.width" = \{\.\.\.\}\)'),
        (lambda d: d["methods"][0].update(loss="focal", schedule={"loss": {"gamma": {"start": 1.0, "end": 2.0}}}),
         r'schedule.loss: holds tables \(gamma\) .* quote it \("loss.gamma" = \{\.\.\.\}\)'),
        (lambda d: d["methods"][0].update(transforms=["flooding", {"name": "flooding", "params": {"b": 0.1}}]),
         "transform 'flooding' is listed twice"),
        (lambda d: d["methods"][0].update(datasets=[]), r"datasets = \[\] names no dataset"),
        (lambda d: d.update(search={"model.width": {"low": 0, "high": 8, "log": True}}), "a log range of integers needs low >= 1"),
        (lambda d: d["train"].update(lr_final=100.0), "lr_final = 100 is at or above every searched lr"),
        (lambda d: d.update(trials=10**12), "trials must be at most 100,000"),
        (lambda d: d["train"].update(epochs=10**9), "epochs must be at most 100,000"),
        (lambda d: d.update(datasets=[{"name": "wine", "label": "w2"}, {"name": "digits", "label": "wine"}])
         or d["methods"][0].update(datasets=["wine"]), "datasets entry 'wine' is one data set's label and another's name"),
    ]  # fmt: skip
    for mutate, message in cases:
        spec = copy.deepcopy(base)
        mutate(spec)
        with pytest.raises(SpecError, match=message):
            for method in parse_spec(spec, "x.toml").methods:
                resolve_method(method)


def test_the_search_is_drawn_in_one_order_from_the_toml_and_from_the_stored_spec():
    # (a worker reading the stored spec, its keys sorted, drew other hyperparameters than the run that wrote it)
    spec = parse_spec({"name": "t", "trials": 2, "seeds": 2, "train": {"model": "mlp", "epochs": 1},
                       "search": {"seed": {"choices": [0, 1, 2]}, "model.width": {"low": 4, "high": 64}},
                       "datasets": [{"name": "wine"}], "methods": [{"name": "ce", "loss": "cross_entropy",
                       "search": {"loss.label_smoothing": {"low": 0.0, "high": 0.2}, "loss.temperature": {"low": 0.5, "high": 2.0}}}]})  # fmt: skip
    stored = spec_from_json(spec.to_json())
    assert list(resolve_method(spec.methods[0]).search_space(spec.search)) == list(
        resolve_method(stored.methods[0]).search_space(stored.search))
