"""One training run: build the model and the method, train, score on the held-out split.

Tuning runs train on the training part of the train/validation split (stratified, or scikit-
learn's unstratified split with ``val_split = "random"``) and are scored on the validation part;
final runs train on the whole training split and are scored on the test split.  The test split
is never touched during tuning.  With ``[train] standardize`` each stage's features are
standardised again on the part that stage trains on (ddof 0, std floored at 1e-6).

With ``[train] early_stopping`` a run keeps the epoch whose model scores best on validation (the
first such epoch) and reports that checkpoint's scores, as the flooding paper (Ishida et al.
2020) does: a tuning run scores the checkpoint on the validation part; a final run holds the
same validation part out (it trains on the tuning runs' training part, not the whole training
split), picks the epoch on it and scores that epoch's model on the test split.

A two-stage method (``then = {...}``, :class:`lossbench.bench.spec.StageSpec`) trains the spec's
epochs with its own loss and transforms, then the same model for the stage's epochs with the
stage's, under a fresh optimizer; the run's curves and early stopping's choice span both stages,
each epoch's losses being those of the loss it trained with.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch

from lossbench._checks import first_few, first_line, raised_at
from lossbench._generators import python_and_numpy_kept, python_and_numpy_state, seed_python_and_numpy
from lossbench.bench.methods import (
    Method,
    check_compatible,
    check_validation_part,
    output_width,
    set_loss_option,
)
from lossbench.bench.metrics import (
    DECIDED,
    DECISION_TASKS,
    METRICS,
    EpochScores,
    compute_metrics,
    decide,
    f1_thresholds,
    metrics_of_runs,
    selection_metric,
)
from lossbench.bench.spec import (
    SEED_PARAM,
    THEN_PREFIX,
    DatasetSpec,
    Spec,
    SpecError,
    model_hyperparameter,
    resamples_split,
)
from lossbench.bench.storage import OWN_VALIDATION
from lossbench.data import Dataset, class_counts, get_dataset_info, load_dataset, stratified_split
from lossbench.data.splits import provided_validation, random_split, select_train, standardize
from lossbench.models import build_model
from lossbench.registry import Choice, FloatRange, IntRange
from lossbench.train import eval_logits, fit, get_transform, make_transform, packing_refusal, reads_per_sample
from lossbench.train.loop import check_optimizer
from lossbench.train.packed import (
    PackedLosses,
    PackedModel,
    faster_alone,
    fit_packed,
    mean_probe,
    row_values_unkept,
    stretches,
    unpackable_model,
)
from lossbench.train.step import takes_reduction

STAGES = ("tune", "final")
MIN_STD = 1e-6  # the std floor of per-stage standardisation (as the EXACT paper's code)
EVAL_BATCH = 4096  # rows per forward pass when scoring
BEST_EPOCH = "best_epoch"  # early stopping: the kept epoch (0-based), stored beside the metrics
MODEL_GRID = 16  # configurations a searched model may take for its unit's tuning runs to pack (see spread_model)


@dataclass
class Split:
    """One dataset's tensors for one stage, already on the device."""

    dataset: Dataset
    stage: str
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    class_counts: torch.Tensor  # of the fit part: what count-based losses may know
    # Early stopping's validation part where it is not the scored part (final runs); else None.
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    validation: str | None = None  # how the validation part was drawn (OWN_VALIDATION or val_split); None: no such part

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes


def subsample_train(data: Dataset, size: int, seed: int) -> Dataset:
    """The dataset with a seeded stratified subset of ``size`` training samples (test kept whole).

    A subset that leaves a class of the training split (a label's positives) with no sample is refused.
    """
    # The kept rows are the split's validation side, which never takes a class's last sample, so a
    # rare class may get none.  Stored studies trained on these rows: keep them, refuse the loss.
    _, keep = stratified_split(data.y_train, val_fraction=size / len(data.y_train), seed=seed)
    lost = (data.class_counts > 0) & (class_counts(data.y_train[keep], data.task, data.num_classes) == 0)
    if lost.any():
        names = [data.class_names[i] for i in lost.nonzero().flatten().tolist()]
        raise ValueError(
            f"max_train={size} leaves class(es) {', '.join(map(repr, names))} of dataset {data.name!r} with no "
            f"training sample (of {len(data.y_train)}); raise max_train"
        )
    return select_train(data, keep)


def _warn_unlearnable_labels(data: Dataset) -> None:
    """Warn of multi-label labels with no positive training row: no method can learn them, and they
    weigh on every method's macro scores alike."""
    empty = [name for name, count in zip(data.class_names, data.y_train.sum(0).tolist()) if count == 0]
    if empty:
        warnings.warn(f"dataset {data.name!r}: label(s) {first_few(empty)} have no positive "
                      "training row: no method can learn them, and their scores weigh on every method's macro metrics "
                      "alike", stacklevel=2)  # fmt: skip


def _warn_unscored_classes(split: Split) -> None:
    """Warn of classes a single-label run trains on that the part scoring it lacks (a rare class the
    stratified split keeps whole in training, a test file without it): balanced accuracy leaves them
    out and macro-F1 counts them only where a run predicts them, so the scores rest on fewer classes.
    Multi-label: labels with positive training rows but none there score an average precision of 0
    and an F1 of 0 for every method, predicted or not (scikit-learn's conventions, zero_division 0)."""
    # (as subsample_train finds a class it leaves without training rows; negative targets are ignored ones)
    held_out = split.y_eval == 1 if split.task == "multilabel" else split.y_eval[split.y_eval >= 0]
    held_out = held_out.to(split.class_counts.device)  # (the split's counts stay on the CPU; its targets move)
    unscored = (split.class_counts > 0) & (class_counts(held_out, split.task, split.num_classes) == 0)
    absent = [split.dataset.class_names[i] for i in unscored.nonzero().flatten().tolist()]
    if absent:
        part = "validation" if split.stage == "tune" else "test"
        effect = ("every method's average precision and F1 of them are 0, predicted or not (their share of mAP "
                  "and macro-F1 alike for all)" if split.task == "multilabel" else
                  "balanced accuracy leaves them out and macro-F1 counts them only where a run predicts them")  # fmt: skip
        warnings.warn(f"dataset {split.dataset.name!r}: {'label(s)' if split.task == 'multilabel' else 'class(es)'} "
                      f"{first_few(absent)} have training rows but none in the {part} rows ({len(split.y_eval)}) that "
                      f"score the {split.stage} runs: {effect}", stacklevel=3)  # fmt: skip


def _kept_data(ds: DatasetSpec) -> dict[str, Any]:
    """For a loader whose ``seed`` also draws its data (a generator's ``data_seed`` left unset): its seed as
    ``data_seed``, so that a resampled split re-splits the same data instead of drawing new data."""
    loader = get_dataset_info(ds.name).params()
    if "data_seed" not in loader or ds.params.get("data_seed") is not None:
        return {}
    return {"data_seed": ds.params.get("seed", loader["seed"])}


class DataCache:
    """Loads each dataset once per process and keeps both stages' splits on the device."""

    def __init__(self, spec: Spec, device: torch.device, data_dir: str | None = None) -> None:
        self.spec, self.device, self.data_dir = spec, device, data_dir
        self._splits: dict[tuple[str, str, int | None], Split] = {}

    def get(self, ds: DatasetSpec, stage: str, split_seed: int | None = None) -> Split:
        """The stage's split; ``split_seed`` loads the dataset with that ``seed`` (a resampled split).

        A dataset whose test split is fixed (``spec.resamples_split``) keeps it.
        """
        if split_seed is not None and not resamples_split(ds):
            split_seed = None
        key = (ds.label, stage, split_seed)
        if key not in self._splits:
            params = ds.params if split_seed is None else {**ds.params, "seed": split_seed, **_kept_data(ds)}
            # (named by the spec's label, as messages name it, not by a file's stem)
            data = replace(load_dataset(ds.name, data_dir=self.data_dir, **params), name=ds.label)
            if ds.max_train is not None and ds.max_train < len(data.y_train):
                data = subsample_train(data, ds.max_train, self.spec.seed)
            if data.task == "multilabel" and split_seed is None:
                _warn_unlearnable_labels(data)
            # a resampled split: only the stage asked (the final runs': another copy of the data per seed otherwise)
            for s in STAGES if split_seed is None else (stage,):
                self._splits[(ds.label, s, split_seed)] = split = self._split(data, s)
                if split_seed is None:
                    if s == "tune":  # (a refusal first: its warning of the classes left unscored would say it twice)
                        check_validation_part(split, self.spec, f"dataset {ds.label!r}")
                    _warn_unscored_classes(split)
        return self._splits[key]

    def digests(self) -> dict[str, str]:
        """Per dataset label loaded so far, the digest of its data as tuning reads them (computed anew
        on each call)."""
        return {label: split.dataset.digest() for (label, stage, seed), split in self._splits.items()
                if stage == "tune" and seed is None}  # fmt: skip

    def _split(self, data: Dataset, stage: str) -> Split:
        x_val = y_val = validation = None
        if stage == "tune" or self.spec.train.early_stopping:
            # The same seeded split for every method: their validation scores are comparable.
            provided = provided_validation(data)  # the source's own dev split, when it ships one
            validation = self.spec.val_split if provided is None else OWN_VALIDATION
            if provided is not None:
                fit_idx, val_idx = provided
            elif self.spec.val_split == "random":
                fit_idx, val_idx = random_split(len(data.y_train), self.spec.val_fraction, self.spec.seed)
            else:
                fit_idx, val_idx = stratified_split(data.y_train, val_fraction=self.spec.val_fraction, seed=self.spec.seed)
            x_fit, y_fit = data.x_train[fit_idx], data.y_train[fit_idx]
            x_eval, y_eval = data.x_train[val_idx], data.y_train[val_idx]
            if stage == "final":  # early stopping: validation picks the epoch, the test split scores it
                x_val, y_val, x_eval, y_eval = x_eval, y_eval, data.x_test, data.y_test
        else:
            x_fit, y_fit, x_eval, y_eval = data.x_train, data.y_train, data.x_test, data.y_test
        if self.spec.train.standardize and x_fit.is_floating_point():
            if x_val is not None:
                _, x_val, _ = standardize(x_fit, x_val, min_std=MIN_STD)
            x_fit, x_eval, _ = standardize(x_fit, x_eval, min_std=MIN_STD)
        dev = self.device
        return Split(
            data, stage, x_fit.to(dev), y_fit.to(dev), x_eval.to(dev), y_eval.to(dev),
            class_counts(y_fit, data.task, data.num_classes),
            None if x_val is None else x_val.to(dev), None if y_val is None else y_val.to(dev), validation,
        )  # fmt: skip


@dataclass
class RunResult:
    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    # An evaluation run read through other decision rules (Spec.read_through): each rule's label metrics
    decided: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return bool(self.metrics.get("diverged", 0.0))


@dataclass(frozen=True)
class Stage:
    """One stage of a run: the method it trains with (the second stage's own ``Method``), its
    parameters as that method reads them, its first epoch within the run and its length."""

    method: Method
    params: dict[str, Any]
    first_epoch: int
    epochs: int
    lr_scale: float = 1.0


def stages(method: Method, params: dict[str, Any], spec: Spec) -> list[Stage]:
    """A run's stages: the method for the spec's epochs and, for a two-stage method, its second stage."""
    out = [Stage(method, params, 0, spec.train.epochs)]
    if method.then is not None:
        then = method.spec.then
        assert then is not None
        out.append(Stage(method.then, method.stage_params(params), spec.train.epochs, then.epochs, then.lr_scale))
    return out


def check_stages(split: Split, method: Method, where: str) -> None:
    """A second stage's loss runs on the task and reads the logits the first stage's model gives."""
    if method.then is None:
        return
    then = method.then.loss
    check_compatible(then, split.task, split.num_classes, f"{where}, its second stage")
    widths = [output_width(loss, split.task, split.num_classes) for loss in (method.loss, then)]
    if widths[0] != widths[1]:
        raise SpecError(f"{where}: the second stage's loss {then.name!r} reads {widths[1]} logit(s), the first stage's "
                        f"{method.loss.name!r} {widths[0]}: one model cannot serve both")  # fmt: skip


def run_seed(stage: str, draw: int, spec: Spec, seed: int | None = None, params: dict | None = None) -> int:
    """The training seed of a run: a final run's evaluation seed; a tuning trial's searched
    ``seed`` when the spec searches one, else one derived from the study seed and its ``draw``
    (``runner.draw_index``: a killed trial's retry is the draw it retries, so a kill changes no seed)."""
    if stage == "final":
        assert seed is not None
        return seed
    if params is not None and SEED_PARAM in params:
        return int(params[SEED_PARAM])
    return spec.seed * 100_003 + draw


def repeats(spec: Spec, n: int) -> int:
    """Passes over the data per epoch: ``int(repeat_to_batches * batch_size / n)``, at least one."""
    if spec.train.repeat_to_batches <= 0:
        return 1
    return max(1, spec.train.repeat_to_batches * spec.train.batch_size // n)


def _ends(dist: Any) -> list[Any]:
    """The values a search space can take at its ends: a range's bounds, a grid's every value."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


def _values(dist: Any) -> float:
    """How many values a search space holds (inf for a float range)."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    return math.inf


def _probes(space: dict[str, Any], middle: dict[str, Any], which: Callable[[str], bool] = lambda key: True) -> list[dict[str, Any]]:
    """The parameters a check tries: the space's ``middle``, then each parameter ``which`` selects at
    each of its ends (the others at the middle)."""
    return [middle, *({**middle, key: value} for key, dist in space.items() if which(key) for value in _ends(dist))]


def _middle(dist: Any) -> Any:
    """A value inside the space, for the parameters not being checked at their ends."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return dist.choices[0]
    mid = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    return round(mid) if isinstance(dist, optuna.distributions.IntDistribution) else mid


def model_kwargs(spec: Spec, method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """The model's hyperparameters for a run: ``[train] model_params``, the method's own ``model_params``
    and the searched ``model.<name>``."""
    searched = {model_hyperparameter(k): v for k, v in params.items() if v is not None}
    return {**spec.train.model_params, **method.spec.model_params, **{k: v for k, v in searched.items() if k is not None}}


# The seed the checks build models under, as a run builds its own under its seed: a factory reads it (a user's factory
# seeding NumPy with it failed on torch's unseeded initial seed, a 64-bit number), and the process's generators stay
# as they were.
CHECK_SEED = 0


def _check_model(split: Split, method: Method, spec: Spec, params: dict[str, Any], where: str) -> torch.nn.Module:
    kwargs = model_kwargs(spec, method, params)
    try:
        model = build_model(spec.train.model, split.dataset, num_outputs=output_width(method.loss, split.task, split.num_classes),
                            seed=CHECK_SEED, **kwargs)  # fmt: skip
    except (ValueError, TypeError, RuntimeError, MemoryError) as err:  # (RuntimeError: torch's allocator, say)
        raise SpecError(f"{where}: model {spec.train.model!r} with {kwargs}: {first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - a factory's own (dataset.n_features: AttributeError), in one line
        raise SpecError(f"{where}: model {spec.train.model!r} with {kwargs} fails: {type(err).__name__}: "
                        f"{first_line(err)}{raised_at(err)}") from None
    if not any(p.requires_grad for p in model.parameters()):  # (the optimizer's bare error came in the first run)
        raise SpecError(f"{where}: model {spec.train.model!r} with {kwargs} has no trainable parameters (none, or "
                        "every one frozen: requires_grad False); a run would have nothing to train")  # fmt: skip
    stage_losses = (method.loss,) if method.then is None else (method.loss, method.then.loss)
    for loss in stage_losses:
        if not loss.shift_invariant and getattr(model, "zero_first_logit", False):
            raise SpecError(f"{where}: loss {loss.name!r} reads each class's logit on its own, and model "
                            f"{spec.train.model!r} fixes class 0's at 0; set zero_first_logit = false (model_params of "
                            "[train] or of the method)")  # fmt: skip
    return model


def _check_training_and_eval(model: torch.nn.Module, x: torch.Tensor, what: str) -> None:
    """The model's backward pass and its forward in eval mode (scoring) on ``x``, which a run needs past the
    forward in training mode: a failure is refused before anything is stored (else the first run failed with
    a traceback, and the study, stored with the model's code, refused the fixed model)."""
    mode = "its backward pass"
    try:
        model(x).sum().backward()  # (a model without trainable parameters is refused before: _check_model)
        mode = "eval mode"
        with torch.no_grad():
            model.eval()(x)
    except Exception as err:  # noqa: BLE001 - a plugin model's code (an in-place op on a saved tensor, say)
        raise SpecError(f"{what} fails in {mode} on {len(x)} samples of the data: "
                        f"{type(err).__name__}: {first_line(err)}{raised_at(err)}") from None
    finally:
        model.train()


def check_unit(split: Split, method: Method, spec: Spec) -> None:
    """Build the model, the loss and the transforms at every end of every search range, so a spec
    that cannot run is refused before anything is stored (not in its first trial)."""
    where = f"method {method.name!r} on {split.dataset.name!r}"
    check_decision(split, method.spec.decision, spec, where)
    for reader in spec.readers(method.name):
        check_decision(split, reader.decision, spec, f"method {reader.name!r} on {split.dataset.name!r}")
    check_stages(split, method, where)
    space = method.search_space(spec.search)
    middle = {k: _middle(d) for k, d in space.items()}
    model = _check_model(split, method, spec, middle, where)
    requirements = {"class_counts": split.class_counts.to(split.x_fit.device)}
    model.to(split.x_fit.device)
    try:
        with torch.no_grad():
            logits = model(split.x_fit[:8])  # the loss checks its arguments when called
    except Exception as err:  # noqa: BLE001 - a plugin model's forward, say (self.cfg["scale"]: KeyError)
        raise SpecError(f"{where}: model {spec.train.model!r} fails on {len(split.x_fit[:8])} samples of the data: "
                        f"{type(err).__name__}: {first_line(err)}{raised_at(err)}") from None
    if not isinstance(logits, torch.Tensor):
        hint = "; return its .logits" if isinstance(getattr(logits, "logits", None), torch.Tensor) else ""  # (a Hugging Face output)
        raise SpecError(f"{where}: model {spec.train.model!r} returns {type(logits).__name__}, not a tensor of logits "
                        f"(samples, outputs){hint}")  # fmt: skip
    _check_last_batch(model, split, spec, where)
    needed = (len(split.x_fit[:8]), output_width(method.loss, split.task, split.num_classes))
    if logits.shape != needed:
        raise SpecError(f"{where}: model {spec.train.model!r} gives outputs of shape {tuple(logits.shape)} for "
                        f"{needed[0]} samples; loss {method.loss.name!r} needs {needed} "
                        "(a model builds num_outputs logits)")  # fmt: skip
    _check_training_and_eval(model, split.x_fit[:8], f"{where}: model {spec.train.model!r}")

    def attempt(params: dict[str, Any], which: slice, what: str, scheduled_end: bool = False) -> None:
        for stage in stages(method, params, spec)[which]:
            try:
                with torch.no_grad():
                    loss = stage.method.build_loss(stage.params, requirements, split.task, validate=True)
                    for key, schedule in stage.method.spec.schedule.items() if scheduled_end else ():
                        set_loss_option(loss.loss, key[5:], schedule.end)  # (built at its start: its first epoch's value)
                    # called as a training step calls it: a loss without the reduction= it promises fails here
                    loss.to(logits.device)(logits, split.y_fit[:8], **({"reduction": "mean"} if takes_reduction(loss) else {}))
                transforms = stage.method.transform_list(stage.params)
                for name, kwargs in transforms:
                    make_transform((name, kwargs))
                factories = [get_transform(name).factory for name, _ in transforms]
                reason = _not_per_sample(loss, logits, split.y_fit[:8]) if reads_per_sample(factories) else None
                if reason is not None:  # (a run alone would fail at its first step)
                    first = next(n for (n, _), f in zip(transforms, factories) if f.stage == "objective")
                    raise ValueError(f"transform {first!r} reads per-sample losses; loss {stage.method.loss.name!r} "
                                     f"{reason}")  # fmt: skip
                lr, decay = params.get("lr", 0.1), params.get("weight_decay", 0.0)
                check_optimizer(spec.train.optimizer, lr, [decay], spec.train.weight_decay_on)
            except (ValueError, TypeError) as err:
                raise SpecError(f"{where}: {what} is refused: {err}") from None
            except Exception as err:  # noqa: BLE001 - a plugin loss's own error on a batch of the data, say
                raise SpecError(f"{where}: {what} fails: {type(err).__name__}: {first_line(err)}{raised_at(err)}") from None

    # the middle first: a bad one would be blamed on whichever end was checked beside it
    fixed = {f"loss.{k}": v for k, v in method.spec.params.items()}
    fixed |= {f"{name}.{k}": v for name, given, _ in method.transforms for k, v in given.items()}
    with_fixed = f" with the method's fixed parameters {fixed}" if fixed else ""  # (a bad one is there, not in the middle)
    attempt(middle, slice(None), f"the middle of the search space {middle}{with_fixed}")
    ends = {key: schedule.end for st in stages(method, middle, spec) for key, schedule in st.method.spec.schedule.items()}
    if ends:  # (a schedule runs from its start to its end, one way: both ends bound its values)
        attempt(middle, slice(None), f"the end of its schedule {ends}", scheduled_end=True)
    for key, dist in space.items():
        for value in _ends(dist):
            params = {**middle, key: value}
            if model_hyperparameter(key) is not None:
                _check_model(split, method, spec, params, f"{where}: {key} = {value!r} (an end of its search space)")
                continue
            stage = slice(1, 2) if key.startswith(THEN_PREFIX) else slice(0, 1)
            attempt(params, stage, f"{key} = {value!r} (an end of its search space)")


def _thresholds(fit_logits: torch.Tensor, split: Split) -> torch.Tensor | None:
    """Decision "thresholds": each label's threshold from the fit part (None where those logits are not
    all finite: the run diverged, and its label metrics through the thresholds are nan: see ``_diverged``)."""
    return f1_thresholds(fit_logits, split.y_fit) if bool(torch.isfinite(fit_logits).all()) else None


def _diverged(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` as a diverged run's: every one nan, ``diverged`` 1."""
    return {name: math.nan for name in metrics} | {"diverged": 1.0}


def _decided(logits: torch.Tensor, rule: str, split: Split, thresholds: torch.Tensor | None) -> torch.Tensor:
    """The scores decision ``rule`` reads from ``logits`` (:func:`decide`); per-label thresholds not set
    (the per-epoch curves, a diverged fit part) read the logits as they are."""
    if rule == "thresholds" and thresholds is None:
        return logits
    return decide(logits, rule, split.class_counts, thresholds)


def _check_last_batch(model: torch.nn.Module, split: Split, spec: Spec, where: str) -> None:
    """A model that normalises each batch (BatchNorm) cannot train on a batch of one sample: refuse a
    training part (tuning's, or the final runs') whose epochs end with one, before any run."""
    if spec.train.drop_last or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    final = len(split.y_fit) if spec.train.early_stopping else len(split.y_fit) + len(split.y_eval)
    for what, n in (("tuning runs'", len(split.y_fit)), ("final runs'", final)):
        if repeats(spec, n) * n % spec.train.batch_size == 1:
            raise SpecError(f"{where}: model {spec.train.model!r} normalises each batch (BatchNorm), and the {what} "
                            f"{n} training samples leave a last batch of one in every epoch at batch_size "
                            f"{spec.train.batch_size}; set [train] drop_last = true or another batch_size")  # fmt: skip


def check_decision(split: Split, decision: str, spec: Spec, where: str) -> None:
    """The decision rule applies to the split's task (and to the spec's training)."""
    if split.task not in DECISION_TASKS[decision]:
        raise SpecError(f"{where}: decision {decision!r} applies to {' and '.join(DECISION_TASKS[decision])} tasks, not {split.task}")
    if decision == "thresholds" and spec.train.early_stopping:
        raise SpecError(f"{where}: decision 'thresholds' sets its thresholds when the run ends; it cannot choose an "
                        "epoch with [train] early_stopping")  # fmt: skip


class _RunScores:
    """One run's loss (with its schedule) and the curves and metrics it is scored by.

    Per-epoch curves: mean training loss, held-out loss (the method's own loss) and the held-out
    selection metric; they stay on the device until the run ends (no host sync per epoch).  With
    early stopping the run also keeps its best validation epoch's held-out logits (one host sync
    per epoch, to compare) and, where validation is not the held-out part, a ``val_<metric>`` curve.
    """

    def __init__(self, split: Split, method: Method, spec: Spec) -> None:
        self.split, self.method, self.spec = split, method, spec
        self.metric = selection_metric(spec.selection_metric, split.task)
        self.train_loss: list[float] = []
        self.heldout_loss: list[torch.Tensor] = []
        self.heldout_metric = EpochScores(self.metric, split.y_eval, split.task, split.num_classes)
        self.last_logits: torch.Tensor | None = None  # the last epoch's held-out logits are the final model's
        self.stopping = spec.train.early_stopping
        self.decision = method.spec.decision
        self.thresholds: torch.Tensor | None = None  # decision "thresholds": set from the fit part when the run ends
        # the rules other methods read an evaluation run through (their runs are this one: Spec.read_through)
        self.readers = spec.read_through(method.name) if split.stage == "final" else ()
        self.best: tuple[float, int, torch.Tensor] | None = None  # validation score, epoch, held-out logits
        self.val_metric: list[float] = []
        self.stage: Stage  # set by begin(), which the caller calls before each stage, the first included

    def begin(self, stage: Stage) -> None:
        """Train with this stage's loss from now on (its first epoch's schedule set)."""
        self.stage = stage
        self.adapter = stage_loss(self.split, stage)
        self.loss = self.adapter.unwrapped()
        self._own_schedule = getattr(self.adapter.loss, "set_epoch", None)  # EXACT's sigma, LDAM's re-weighting
        self.schedule(stage.first_epoch)

    def schedule(self, epoch: int) -> None:
        """The stage loss's own schedule and the method's scheduled options, before each epoch (and
        once after the stage's last); ``epoch`` counts from the run's start."""
        local, epochs = epoch - self.stage.first_epoch, self.stage.epochs
        if self._own_schedule is not None:
            self._own_schedule(local, epochs)
        for key, sched in self.stage.method.spec.schedule.items():
            set_loss_option(self.adapter.loss, key[5:], sched.value(local, epochs))

    def epoch_end(
        self, epoch: int, stats: dict[str, float], logits: torch.Tensor, val_logits: torch.Tensor | None = None,
        heldout_loss: torch.Tensor | None = None, counted: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:  # fmt: skip
        """``logits`` on the held-out part; ``val_logits`` on ``split.x_val`` where the split has one;
        ``heldout_loss`` the loss on ``logits`` and ``counted`` their held-out metric's count where the
        caller computed them (a pack, for all its runs; the count only for the arg-max decision)."""
        if heldout_loss is None:
            with torch.no_grad():
                heldout_loss = self.loss(logits, self.split.y_eval, reduction="mean")
        self.heldout_loss.append(heldout_loss)
        self.last_logits = logits
        self.train_loss.append(float(stats.get("loss", math.nan)))
        self.heldout_metric.add(logits, counted, self.scores(logits))
        if self.stopping:
            self._keep_if_best(epoch, logits, val_logits)
        self.schedule(epoch + 1)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the method's decision rule predicts from: the logits, or their post-hoc adjustment
        (per-label thresholds apply once the run has set them: its per-epoch curves read 0)."""
        return _decided(logits, self.decision, self.split, self.thresholds)

    def metrics(self, logits: torch.Tensor, target: torch.Tensor, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """:func:`compute_metrics` of the model's logits, its label metrics read through the decision rule."""
        return compute_metrics(logits, target, self.split.task, self.split.num_classes, names, self.scores(logits))

    def _keep_if_best(self, epoch: int, logits: torch.Tensor, val_logits: torch.Tensor | None) -> None:
        """Keep this epoch's held-out logits if its validation score beats every earlier epoch's
        (a tie keeps the earlier; a nan score, a diverged epoch, never wins)."""
        split = self.split
        if split.y_val is None:
            val_logits, y_val = logits, split.y_eval  # a tuning run: validation is the held-out part
        else:
            assert val_logits is not None, "a final run with early stopping scores its validation part each epoch"
            y_val = split.y_val
        score = self.metrics(val_logits, y_val, (self.metric,))[self.metric]
        if split.y_val is not None:
            self.val_metric.append(score)
        if score == score and (self.best is None or score > self.best[0]):
            self.best = (score, epoch, logits)

    def scored(self) -> torch.Tensor:
        """The held-out logits the run is scored by: its best epoch's with early stopping (every epoch
        diverged: the last), else its last epoch's."""
        assert self.last_logits is not None
        return self.last_logits if self.best is None else self.best[2]

    def result(self, fit_logits: Callable[[], torch.Tensor], seconds: float, metrics: dict[str, float] | None = None) -> RunResult:
        """The run's metrics on the held-out part (``metrics``: as :meth:`metrics` gives them for
        :meth:`scored`, where the caller computed them); with ``tie_break = "train_metric"`` a tuning
        run also scores the fit part (``fit_logits()``), whose score breaks ties between equal
        validation scores."""
        split, metric = self.split, self.metric
        scored = self.scored()
        fit_once: list[torch.Tensor] = []  # the fit part's logits, computed at most once

        def fit() -> torch.Tensor:
            if not fit_once:
                fit_once.append(fit_logits())
            return fit_once[0]

        if self.decision == "thresholds":
            self.thresholds = _thresholds(fit(), split)
        metrics = self.metrics(scored, split.y_eval) if metrics is None else dict(metrics)
        if self.decision == "thresholds" and self.thresholds is None:  # (its held-out logits may be finite)
            metrics = _diverged(metrics)
        labels = tuple(name for name in METRICS[split.task] if name in DECIDED)
        decided = {}
        for rule in self.readers:  # the same held-out logits, through each reader's rule
            thresholds = _thresholds(fit(), split) if rule == "thresholds" else None
            read = _decided(scored, rule, split, thresholds)
            values = compute_metrics(scored, split.y_eval, split.task, split.num_classes, labels, read)
            decided[rule] = {name: values[name] for name in labels}
            if rule == "thresholds" and thresholds is None:  # (read as diverged: see above)
                decided[rule] = _diverged(decided[rule])
        if self.stopping:
            metrics[BEST_EPOCH] = float(len(self.train_loss) - 1 if self.best is None else self.best[1])
        if self.spec.tie_break == "train_metric" and split.stage == "tune":
            metrics[f"train_{metric}"] = self.metrics(fit(), split.y_fit, (metric,))[metric]
        curves = {
            "train_loss": self.train_loss,
            "heldout_loss": torch.stack(self.heldout_loss).tolist(),
            f"heldout_{metric}": self.heldout_metric.values(),
        }
        if self.val_metric:
            curves[f"val_{metric}"] = self.val_metric
        return RunResult(metrics, curves, seconds, decided)


def stage_loss(split: Split, stage: Stage) -> Any:
    """The stage's loss in the bench's adapter, on the split's device.  No value checks on the hot
    path: the data were checked when loaded, and a diverging run must produce non-finite logits
    (recorded as diverged), not an exception."""
    device = split.x_fit.device
    requirements = {"class_counts": split.class_counts.to(device)}
    return stage.method.build_loss(stage.params, requirements, split.task, validate=False).to(device)


def _seed_run(seed: int, device: torch.device) -> None:
    """``torch.manual_seed(seed)`` for a run on ``device``, and NumPy's and Python's generators (a plugin's
    model may draw its weights from either: its runs differed from one call to the next).  On the CPU only
    the CPU's torch generator: the same draws, without queueing a seed for each accelerator PyTorch knows,
    each with a stack trace recorded (about 0.5 ms a call, once per run)."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    seed_python_and_numpy(seed)


def _build_run_model(split: Split, method: Method, spec: Spec, seed: int, params: dict[str, Any]) -> torch.nn.Module:
    check_compatible(method.loss, split.task, split.num_classes, f"method {method.name!r} on {split.dataset.name!r}")
    check_stages(split, method, f"method {method.name!r} on {split.dataset.name!r}")
    _seed_run(seed, split.x_fit.device)
    return build_model(
        spec.train.model, split.dataset, num_outputs=output_width(method.loss, split.task, split.num_classes),
        **model_kwargs(spec, method, params),
    ).to(split.x_fit.device)  # fmt: skip


def _fit_options(spec: Spec, split: Split, stage: Stage) -> dict[str, Any]:
    """What ``fit`` and ``fit_packed`` take from the spec alike, for one stage of a run."""
    t = spec.train
    lr_final = None if t.lr_final is None else t.lr_final * stage.lr_scale
    return dict(
        epochs=stage.epochs, batch_size=t.batch_size, optimizer=t.optimizer, momentum=t.momentum, lr_final=lr_final,
        lr_schedule=t.lr_schedule, weight_decay_on=t.weight_decay_on, repeat=repeats(spec, len(split.y_fit)),
        drop_last=t.drop_last,
    )  # fmt: skip


def held_out_draws_apart(split: Split) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An epoch's end scored with a copy of the random generators: what the held-out part's scoring draws (EXACT's
    Monte Carlo estimator on the held-out rows, a model that draws in eval mode) leaves the training's draws as
    they were, so that a run trains alike whatever the size of its held-out part (a genz run's losses moved with
    the number of test rows)."""
    device = split.x_fit.device
    devices = [device] if device.type == "cuda" else []

    def wrap(epoch_end: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(epoch_end)
        def apart(*args: Any) -> Any:
            with torch.random.fork_rng(devices=devices):
                return epoch_end(*args)

        return apart

    return wrap


@functools.cache
def _optimizer_imported() -> None:
    """Build a throwaway torch optimizer once per process: the first one imports torch's compiler (about a
    second), which would land in the ``seconds`` of the first run trained alone (packed runs build none)."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)


def train_and_score(split: Split, method: Method, params: dict[str, Any], spec: Spec, seed: int) -> RunResult:
    """Train the spec's model with the method at ``params`` and score it on ``split.x_eval``."""
    _optimizer_imported()  # (before the run's clock starts)
    start = time.perf_counter()
    model = _build_run_model(split, method, spec, seed, params)
    run = _RunScores(split, method, spec)
    generator = torch.Generator().manual_seed(seed)  # one for the whole run: stage 2 goes on drawing from it

    @held_out_draws_apart(split)
    def on_epoch_end(epoch: int, stats: dict[str, float]) -> None:
        val = None if split.x_val is None else eval_logits(model, split.x_val, batch_size=EVAL_BATCH)
        run.epoch_end(run.stage.first_epoch + epoch, stats, eval_logits(model, split.x_eval, batch_size=EVAL_BATCH), val)

    for stage in stages(method, params, spec):
        run.begin(stage)
        fit(
            model, run.loss, split.x_fit, split.y_fit, lr=params["lr"] * stage.lr_scale,
            weight_decay=params.get("weight_decay", 0.0), transforms=stage.method.transform_list(stage.params),
            generator=generator, on_epoch_end=on_epoch_end, **_fit_options(spec, split, stage),
        )  # fmt: skip
    return run.result(lambda: eval_logits(model, split.x_fit, batch_size=EVAL_BATCH), time.perf_counter() - start)


# The held-out outputs one pack may hold: each run's logits on the test and validation parts at every epoch's end,
# with its loss's and metrics' temporaries, counted as two float32 copies.  Past it the runs train in several packs
# (5,000 classes, 50,000 rows: a pack of 8 peaked 1.7 GB above one run at a time; TPE asks 20 at once).
PACK_OUTPUT_BYTES = 2 << 30


def runs_that_fit(split: Split, methods: Sequence[Method], spec: Spec) -> int:
    """How many runs of ``methods`` one pack on ``split`` may hold within :data:`PACK_OUTPUT_BYTES` (at least one):
    their logits on the held-out rows, and on the fit part where a run scores it too (a tie broken by the
    training metric, thresholds fitted on it)."""
    rows = len(split.x_eval) + (0 if split.x_val is None else len(split.x_val))
    if split.stage == "tune" and spec.tie_break == "train_metric" or any(
            "thresholds" in (m.spec.decision, *spec.read_through(m.name)) for m in methods):  # fmt: skip
        rows += len(split.x_fit)
    return max(1, PACK_OUTPUT_BYTES // (2 * 4 * rows * max(1, split.num_classes)))


def train_and_score_packed(
    split: Split, method: Method | Sequence[Method], runs: Sequence[tuple[dict[str, Any], int]], spec: Spec
) -> list[RunResult]:
    """:func:`train_and_score` for each ``(params, seed)`` of ``runs``, trained as one pack
    (:func:`lossbench.train.packed.fit_packed`); the unit must pack (:func:`unpackable`).

    ``method`` is every run's, or one per run: runs of several methods share a pack where their
    :func:`pack_key` is the same (each method's runs side by side, in one stretch), and runs share a
    pack only with runs of their :func:`model_config`.  Runs of one
    method whose loss arguments are equal share one loss call per step when the loss is a mean of
    per-sample terms (checked for each stage's losses, on a few rows of the training part: ``PackedLosses``'s
    probe).  Each run's ``seconds`` is the pack's time divided among its runs.
    """
    start = time.perf_counter()
    methods = [method] * len(runs) if isinstance(method, Method) else list(method)
    if len(methods) != len(runs) or len({pack_key(split, m, spec) for m in methods}) > 1:
        raise ValueError("a pack takes one method per run, all of one pack_key")
    order = _by_loss_call(methods, runs, spec)
    if order is not None:  # trained in that order, returned in the caller's
        trained = train_and_score_packed(split, [methods[k] for k in order], [runs[k] for k in order], spec)
        results: list[RunResult] = [trained[0]] * len(runs)
        for at, k in enumerate(order):
            results[k] = trained[at]
        return results
    if len({model_config(spec, params) for params, _ in runs}) > 1:  # (the pack's runs share one architecture)
        raise ValueError("a pack's runs must have the same searched model hyperparameters")
    packed = PackedModel([_build_run_model(split, m, spec, seed, params) for m, (params, seed) in zip(methods, runs)])
    scores = [_RunScores(split, m, spec) for m in methods]
    plans = [stages(m, params, spec) for m, (params, _) in zip(methods, runs)]
    generators = [torch.Generator().manual_seed(seed) for _, seed in runs]
    # (the decision rule reads the logits as they are: the pack's held-out metric counted at once)
    count_together = all(run.decision == "argmax" for run in scores)

    # each stage's losses and how they share calls: in training, and on the held-out targets (for_targets, once);
    # a run whose loss's mean is not the even mean of its rows (a plugin's weighted mean) keeps calls of its own
    stage_losses: list[tuple[PackedLosses, PackedLosses]] = []
    probe = functools.cache(lambda: mean_probe(packed, split.x_fit, split.y_fit))  # (made where a user's loss needs it)

    @held_out_draws_apart(split)
    def on_epoch_end(epoch: int, rows: list[dict[str, float]]) -> None:
        logits = packed.eval_logits(split.x_eval, batch_size=EVAL_BATCH)
        val = None if split.x_val is None else packed.eval_logits(split.x_val, batch_size=EVAL_BATCH)
        with torch.no_grad():  # every run's before any run's epoch end moves its loss's schedule on
            heldout = stage_losses[-1][1](logits, split.y_eval.expand(len(runs), *split.y_eval.shape))
        metric = scores[0].heldout_metric
        counted = metric.count_runs(logits) if count_together and metric.deferred(logits[0]) else None
        for k, run in enumerate(scores):
            run.epoch_end(run.stage.first_epoch + epoch, rows[k], logits[k], None if val is None else val[k], heldout[k],
                          None if counted is None else (counted[0][k], counted[1][k]))  # fmt: skip

    for i, first in enumerate(plans[0]):  # runs of one pack_key have the same stages
        now = [plan[i] for plan in plans]
        for run, stage in zip(scores, now):
            run.begin(stage)
        parts = []
        for a, b in stretches([id(stage.method) for stage in now]):
            info, losses = now[a].method.loss, [run.loss for run in scores[a:b]]
            shared = _shared_loss(now[a].method, [stage.params for stage in now[a:b]])
            parts.append(PackedLosses(losses, shared, info.row_params, info.batch_groups, info.row_none, probe))
        trained = parts[0] if len(parts) == 1 else PackedLosses.join(parts)
        stage_losses.append((trained, trained.for_targets(split.y_eval)))
        fit_packed(
            packed, trained, split.x_fit, split.y_fit,
            lrs=[params["lr"] * first.lr_scale for params, _ in runs],
            weight_decays=[params.get("weight_decay", 0.0) for params, _ in runs],
            transforms=[s.method.transform_list(s.params) for s in now], generators=generators, on_epoch_end=on_epoch_end,
            **_fit_options(spec, split, first),
        )  # fmt: skip
    fit_logits: list[torch.Tensor] = []

    def fit_logits_of(k: int) -> torch.Tensor:
        if not fit_logits:
            fit_logits.append(packed.eval_logits(split.x_fit, batch_size=EVAL_BATCH))
        return fit_logits[0][k]

    together = None  # every run's held-out metrics in one pass where they all read the arg-max
    if count_together and split.task == "multiclass":
        together = metrics_of_runs(torch.stack([run.scored() for run in scores]), split.y_eval, split.num_classes)
    seconds = (time.perf_counter() - start) / len(runs)
    return [run.result(lambda k=k: fit_logits_of(k), seconds, None if together is None else together[k])
            for k, run in enumerate(scores)]  # fmt: skip


def _by_loss_call(methods: Sequence[Method], runs: Sequence[tuple[dict[str, Any], int]], spec: Spec) -> list[int] | None:
    """The runs in an order where each method's runs that share a loss call (:func:`_shared_loss`, in the first
    stage) lie side by side, or None where they already do: a shared call takes a slice of the pack's logits,
    where groups out of order cost a gather of the whole pack's logits (and its backward) at every step, and
    each loss its rows in the row-major layout (runs of EXACT with and without ``standardize``, say)."""
    order: list[int] = []
    for a, b in stretches([id(m) for m in methods]):
        params = [stages(methods[a], p, spec)[0].params for p, _ in runs[a:b]]
        grouped = [a + k for group in _shared_loss(methods[a], params) for k in group]
        order += grouped + [k for k in range(a, b) if k not in grouped]  # (runs in no shared call: after, in order)
    return None if order == sorted(order) else order


def pack_key(split: Split, method: Method, spec: Spec) -> tuple[Any, ...]:
    """Runs of methods with the same key may train in one pack on ``split`` (where each method's unit
    packs): the same stages (epochs and lr scale), the same model output width and own model
    hyperparameters and, in each stage, the same answer to whether the first objective transform
    reads per-sample losses."""
    plan = [(s.epochs, s.lr_scale, reads_per_sample([get_transform(name).factory for name, _ in s.method.transform_list({})]))
            for s in stages(method, {}, spec)]  # fmt: skip
    own = tuple(sorted((k, repr(v)) for k, v in method.spec.model_params.items()))
    return tuple(plan), output_width(method.loss, split.task, split.num_classes), own


def _shared_loss(method: Method, params: list[dict[str, Any]]) -> list[list[int]]:
    """Groups of runs whose losses take the same arguments, but for the loss's row parameters (one
    loss call per step for each group, each row with its run's row parameters; a row parameter at
    None groups apart unless the loss gives its None a value per row, ``row_none``); a batch-level
    loss only where it computes each run's rows as their own batch (``batch_groups``).  ``PackedLosses``
    then splits off each run whose loss's mean is not the even mean of its rows (checked on its probe)."""
    shared: dict[Any, list[int]] = {}
    needs = set(method.loss.requires)  # the split's class counts: the same for every run of the unit
    rows, defaults = method.loss.row_params, {h.name: h.default for h in method.loss.hyperparams}
    for k, p in enumerate(params):
        kwargs = method.loss_kwargs(p, {r: None for r in needs})
        if method.loss.batch_groups or not method.loss.is_batch_level(kwargs):  # else it would mix the runs' rows
            fixed = sorted((a, v) for a, v in kwargs.items() if a not in needs and a not in rows)
            unset = [r for r in rows if kwargs.get(r, defaults.get(r)) is None and r not in method.loss.row_none]
            shared.setdefault(repr((fixed, unset)), []).append(k)
    return list(shared.values())


def unpackable(split: Split, method: Method, spec: Spec) -> str | None:
    """Why the unit's runs cannot train packed (None when they can), checked once per unit on a
    small batch: the model must be stateless and give packed (its ``packed_forward`` or ``vmap``)
    what it gives alone, the loss must hold no trained parameters and draw no random numbers, every
    transform must pack."""
    space = method.search_space(spec.search)
    middle = {k: _middle(d) for k, d in space.items()}
    plan = stages(method, middle, spec)
    refused = [r for s in plan for name, _ in s.method.transform_list({}) for r in [packing_refusal(get_transform(name).factory)] if r]
    if refused:
        return refused[0]
    # The model at every end of its searched hyperparameters (runs pack with the runs of their model
    # configuration, see model_config): a searched dropout, say, may make some configurations unable to pack.
    alone, configs = None, []
    for params in _probes(space, middle, lambda key: model_hyperparameter(key) is not None):
        config = model_config(spec, params)
        if config in configs:
            continue
        configs.append(config)
        reason, outputs = _model_unpackable(split, method, spec, params)
        if reason is not None:
            return reason
        alone = outputs if alone is None else alone
    assert alone is not None
    y = split.y_fit[:8]
    # The loss at every end of the search space, as check_unit builds it: a searched option (a learned
    # sigma, a Monte Carlo estimator) may make some runs' losses unable to pack.
    checked = []
    for params in _probes(space, middle):
        for stage in stages(method, params, spec):
            options = stage.method.searched_loss_options(stage.params)
            if (stage.method, options) in checked:
                continue
            checked.append((stage.method, options))
            reason = _loss_unpackable(split, stage, options, alone[0].detach(), y)
            if reason is not None:
                return reason
    return None


def _model_unpackable(split: Split, method: Method, spec: Spec,
                      params: dict[str, Any]) -> tuple[str | None, torch.Tensor | None]:  # fmt: skip
    """Why the model at ``params`` cannot train packed (None when it can: stateless, every parameter given
    a gradient, and its packed outputs are its outputs alone, in training and in eval mode), and where it
    can, two runs' outputs alone on a small batch."""
    models = [_build_run_model(split, method, spec, seed, params) for seed in (0, 1)]
    own = model_config(spec, params) or method.spec.model_params
    where = f"model {spec.train.model!r}" + (f" with {model_kwargs(spec, method, params)}" if own else "")
    reason = unpackable_model(models[0]) or faster_alone(models[0])
    if reason is not None:
        return f"{where}: {reason}", None
    x = split.x_fit[:8]
    try:
        packed = PackedModel(models)
        together = packed(torch.stack([x, x]))
        # a parameter the forward leaves out gets no gradient (alone the optimiser skips it; a pack's one backward fails)
        grads = torch.autograd.grad(together.sum(), packed.params, allow_unused=True)
        scored = packed.eval_logits(x)
    except Exception as err:  # noqa: BLE001 - any failure to run packed means: train one at a time
        return f"{where} does not run packed ({type(err).__name__}: {err})", None
    unused = [name for name, grad in zip(packed.names, grads) if grad is None]
    if unused:
        return f"{where}: its parameter {unused[0]} gets no gradient (unused by its forward)", None
    with torch.no_grad():
        alone = torch.stack([m(x) for m in models])
    for mode, out, own in (("", together.detach(), alone),
                           (" in eval mode", scored, torch.stack([eval_logits(m, x) for m in models]))):  # fmt: skip
        if out.shape != own.shape or not torch.allclose(out, own, rtol=1e-4, atol=1e-5):
            return f"{where} gives other outputs packed than alone{mode}", None
    return None, alone


def configuration_unpackable(split: Split, method: Method, spec: Spec, params: dict[str, Any]) -> str | None:
    """Why runs of the searched model configuration of ``params`` cannot train packed, though their unit packs
    (None: they can): :func:`unpackable` tries each searched model hyperparameter at its ends, the others at
    the middle, not every combination of them (batch norm only where two choices meet, say)."""
    return _model_unpackable(split, method, spec, params)[0]


def spread_model(method: Method, spec: Spec) -> str | None:
    """Why the unit's tuning runs train one at a time though it packs (None: they pack): its searched
    model hyperparameters take more than ``MODEL_GRID`` configurations, which tuning runs would rarely
    share (asked in packs they would only change TPE's suggestions).  Its evaluation runs share the
    chosen configuration: they pack."""
    space = method.search_space(spec.search)
    searched = [k for k in space if model_hyperparameter(k) is not None]
    configurations = math.prod(_values(space[k]) for k in searched)
    if configurations <= MODEL_GRID:
        return None
    return f"tuning runs only: {' x '.join(searched)} searched over more than {MODEL_GRID} configurations, rarely shared"


def model_config(spec: Spec, params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A run's searched model hyperparameters (empty where none is searched): runs pack only with runs of
    the same configuration (the same shapes)."""
    return tuple(sorted((k, v) for k, v in params.items() if model_hyperparameter(k) is not None))


def _loss_unpackable(split: Split, stage: Stage, options: dict[str, Any], logits: torch.Tensor, y: torch.Tensor) -> str | None:
    """Why the stage's loss (with its searched ``options``) cannot train packed: trained parameters (a
    pack trains the models' only) or random draws (a pack's runs would share one stream), on torch's CPU
    generator or the logits' device's, NumPy's or Python's; or, for a shared call, values that are not one per
    sample, or row options not kept row by row."""
    loss = stage_loss(split, stage).unwrapped()
    name = f"{stage.method.loss.name!r} with {options}" if options else repr(stage.method.loss.name)
    if isinstance(loss, torch.nn.Module) and any(p.requires_grad for p in loss.parameters()):
        return f"loss {name} has trained parameters"
    with torch.random.fork_rng(devices=[logits.device] if logits.device.type == "cuda" else []), python_and_numpy_kept():
        states, others = _rng_states(logits.device), python_and_numpy_state()
        loss(logits.requires_grad_(), y).backward()
        drew = any(not torch.equal(a, b) for a, b in zip(states, _rng_states(logits.device)))
        drew = drew or python_and_numpy_state() != others  # (a user's loss drawing from NumPy or Python's random)
    if drew:
        return f"loss {name} draws random numbers"
    if not _shared_loss(stage.method, [stage.params] * 2):  # (batch-level: a call per run, reduction="mean")
        return None
    try:  # a pack's runs share one call with reduction="none"
        reason = _not_per_sample(loss, logits.detach(), y)
    except Exception as err:  # noqa: BLE001 - any failure of that call means: train one at a time
        reason = f"raises {type(err).__name__} for reduction='none': {err}"
    # ... each run's rows with its own row options (a user's loss may read them as one number)
    reason = reason or row_values_unkept(loss, _two_row_values(stage.method.loss, loss), logits.detach(), y)
    return None if reason is None else f"loss {name} {reason}"


def _two_row_values(info: Any, loss: Any) -> dict[str, tuple[Any, Any]]:
    """For each row option of the loss a number set on it now and another its registered space holds (the end
    farther from it, or another choice), where both are numbers: what two runs of a shared call could take."""
    out = {}
    for p in (h for h in info.hyperparams if h.name in info.row_params):
        now = loss.option(p.name)
        if isinstance(now, bool) or not isinstance(now, (int, float)):
            continue
        if isinstance(p.space, (FloatRange, IntRange)):
            other = p.space.low if abs(now - p.space.low) > abs(now - p.space.high) else p.space.high
        elif isinstance(p.space, Choice):
            other = next((c for c in p.space.options if isinstance(c, (int, float)) and not isinstance(c, bool)
                          and c != now), now)  # fmt: skip
        else:
            continue
        if other != now:
            out[p.name] = (now, other)
    return out


def _not_per_sample(loss: Callable[..., torch.Tensor], logits: torch.Tensor, y: torch.Tensor) -> str | None:
    """What is wrong with ``loss``'s ``reduction="none"`` values where the bench reads one per sample (a
    pack's shared call, a per-sample transform): None where they are ``(B,)``, or ``(B, ...)`` per element."""
    with torch.no_grad():
        out = loss(logits, y, reduction="none")
    if out.shape[:1] == logits.shape[:1]:
        return None
    return f"returns shape {tuple(out.shape)} for reduction='none', not one value per sample ({len(logits)},)"


def _rng_states(device: torch.device) -> list[torch.Tensor]:
    return [torch.get_rng_state(), *([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])]
