"""One training run: build the model and the method, train, score on the held-out split.

Tuning runs train on the training part of the train/validation split (stratified, or scikit-
learn's unstratified split with ``val_split = "random"``) and are scored on the validation part;
final runs train on the whole training split and are scored on the test split.  The test split
is never touched during tuning.  With ``[train] standardize`` each stage's features are
standardised again on the part that stage trains on (ddof 0, std floored at 1e-6).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from lossbench.bench.methods import Method, check_compatible, output_width, set_loss_option
from lossbench.bench.metrics import EpochScores, compute_metrics, selection_metric
from lossbench.bench.spec import SEED_PARAM, DatasetSpec, Spec, SpecError
from lossbench.data import Dataset, get_dataset_info, load_dataset, stratified_split
from lossbench.data.splits import random_split, standardize
from lossbench.models import build_model
from lossbench.train import eval_logits, fit, make_optimizer, make_transform

STAGES = ("tune", "final")
MIN_STD = 1e-6  # the std floor of per-stage standardisation (as the EXACT paper's code)


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

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes


def subsample_train(data: Dataset, size: int, seed: int) -> Dataset:
    """The dataset with a seeded stratified subset of ``size`` training samples (test kept whole)."""
    _, keep = stratified_split(data.y_train, val_fraction=size / len(data.y_train), seed=seed)
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])


def class_counts(y: torch.Tensor, task: str, num_classes: int) -> torch.Tensor:
    if task == "multilabel":
        return y.float().sum(0)
    return torch.bincount(y, minlength=num_classes).float()


class DataCache:
    """Loads each dataset once per process and keeps both stages' splits on the device."""

    def __init__(self, spec: Spec, device: torch.device, data_dir: str | None = None) -> None:
        self.spec, self.device, self.data_dir = spec, device, data_dir
        self._splits: dict[tuple[str, str, int | None], Split] = {}

    def get(self, ds: DatasetSpec, stage: str, split_seed: int | None = None) -> Split:
        """The stage's split; ``split_seed`` loads the dataset with that ``seed`` (a resampled split).

        A dataset whose loader has no ``seed`` (one shipped with its test file) keeps its split.
        """
        if split_seed is not None and "seed" not in get_dataset_info(ds.name).params():
            split_seed = None
        key = (ds.label, stage, split_seed)
        if key not in self._splits:
            params = ds.params if split_seed is None else {**ds.params, "seed": split_seed}
            data = load_dataset(ds.name, data_dir=self.data_dir, **params)
            if ds.max_train is not None and ds.max_train < len(data.y_train):
                data = subsample_train(data, ds.max_train, self.spec.seed)
            for s in STAGES:
                self._splits[(ds.label, s, split_seed)] = self._split(data, s)
        return self._splits[key]

    def _split(self, data: Dataset, stage: str) -> Split:
        if stage == "tune":
            # The same seeded split for every method: their validation scores are comparable.
            if self.spec.val_split == "random":
                fit_idx, val_idx = random_split(len(data.y_train), self.spec.val_fraction, self.spec.seed)
            else:
                fit_idx, val_idx = stratified_split(data.y_train, val_fraction=self.spec.val_fraction, seed=self.spec.seed)
            x_fit, y_fit = data.x_train[fit_idx], data.y_train[fit_idx]
            x_eval, y_eval = data.x_train[val_idx], data.y_train[val_idx]
        else:
            x_fit, y_fit, x_eval, y_eval = data.x_train, data.y_train, data.x_test, data.y_test
        if self.spec.train.standardize and x_fit.is_floating_point():
            x_fit, x_eval, _ = standardize(x_fit, x_eval, min_std=MIN_STD)
        dev = self.device
        return Split(
            data, stage, x_fit.to(dev), y_fit.to(dev), x_eval.to(dev), y_eval.to(dev),
            class_counts(y_fit, data.task, data.num_classes),
        )  # fmt: skip


@dataclass
class RunResult:
    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return bool(self.metrics.get("diverged", 0.0))


def run_seed(stage: str, trial_number: int, spec: Spec, seed: int | None = None, params: dict | None = None) -> int:
    """The training seed of a run: a final run's evaluation seed; a tuning trial's searched
    ``seed`` when the spec searches one, else one derived from the study seed and its number."""
    if stage == "final":
        assert seed is not None
        return seed
    if params is not None and SEED_PARAM in params:
        return int(params[SEED_PARAM])
    return spec.seed * 100_003 + trial_number


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


def _middle(dist: Any) -> Any:
    """A value inside the space, for the parameters not being checked at their ends."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return dist.choices[0]
    mid = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
    return round(mid) if isinstance(dist, optuna.distributions.IntDistribution) else mid


def check_unit(split: Split, method: Method, spec: Spec) -> None:
    """Build the model, the loss and the transforms at every end of every search range, so a spec
    that cannot run is refused before anything is stored (not in its first trial)."""
    where = f"method {method.name!r} on {split.dataset.name!r}"
    try:
        model = build_model(spec.train.model, split.dataset, num_outputs=output_width(method.loss, split.task, split.num_classes),
                    **spec.train.model_params)  # fmt: skip
    except (ValueError, TypeError) as err:
        raise SpecError(f"{where}: model {spec.train.model!r} with {spec.train.model_params}: {err}") from None
    space = method.search_space(spec.search)
    middle = {k: _middle(d) for k, d in space.items()}
    requirements = {"class_counts": split.class_counts.to(split.x_fit.device)}
    model.to(split.x_fit.device)
    with torch.no_grad():
        logits = model(split.x_fit[:8])  # the loss checks its arguments when called
    for key, dist in space.items():
        for value in _ends(dist):
            params = {**middle, key: value}
            try:
                with torch.no_grad():
                    method.build_loss(params, requirements, split.task, validate=True).to(logits.device)(logits, split.y_fit[:8])
                for name, kwargs in method.transform_list(params):
                    make_transform((name, kwargs))
                if key in ("lr", "weight_decay"):
                    lr, decay = params.get("lr", 0.1), params.get("weight_decay", 0.0)
                    make_optimizer(list(model.parameters()), spec.train.optimizer, lr=lr, weight_decay=decay)
            except (ValueError, TypeError) as err:
                raise SpecError(f"{where}: {key} = {value!r} (an end of its search space) is refused: {err}") from None


def train_and_score(split: Split, method: Method, params: dict[str, Any], spec: Spec, seed: int) -> RunResult:
    """Train the spec's model with the method at ``params`` and score it on ``split.x_eval``.

    Per-epoch curves: mean training loss, held-out loss (the method's own loss) and the held-out
    selection metric.
    """
    start = time.perf_counter()
    task, num_classes = split.task, split.num_classes
    check_compatible(method.loss, task, num_classes, f"method {method.name!r} on {split.dataset.name!r}")
    torch.manual_seed(seed)
    model = build_model(
        spec.train.model, split.dataset, num_outputs=output_width(method.loss, task, num_classes),
        **spec.train.model_params,
    ).to(split.x_fit.device)  # fmt: skip
    # No value checks on the hot path: the data were checked when loaded, and a diverging run
    # must produce non-finite logits (recorded as diverged), not an exception.
    adapter = method.build_loss(params, {"class_counts": split.class_counts.to(split.x_fit.device)}, task, validate=False)
    loss = adapter.to(split.x_fit.device).unwrapped()
    own_schedule = getattr(adapter.loss, "set_epoch", None)  # e.g. EXACT's sigma schedule, LDAM's deferred re-weighting

    def schedule(epoch: int, epochs: int) -> None:  # before each epoch (and once after the last)
        if own_schedule is not None:
            own_schedule(epoch, epochs)
        for key, sched in method.spec.schedule.items():
            set_loss_option(adapter.loss, key[5:], sched.value(epoch, epochs))
    metric = selection_metric(spec.selection_metric, task)
    # Held-out curves stay on the device until the run ends: no host sync per epoch.
    train_loss: list[float] = []
    heldout_loss: list[torch.Tensor] = []
    heldout_metric = EpochScores(metric, split.y_eval, task, num_classes)
    last_logits: list[torch.Tensor] = []  # the last epoch's held-out logits are the final model's

    def on_epoch_end(epoch: int, stats: dict[str, float]) -> None:
        logits = eval_logits(model, split.x_eval, batch_size=4096)
        last_logits[:] = [logits]
        with torch.no_grad():
            heldout_loss.append(loss(logits, split.y_eval, reduction="mean"))
        train_loss.append(float(stats.get("loss", math.nan)))
        heldout_metric.add(logits)
        schedule(epoch + 1, spec.train.epochs)

    schedule(0, spec.train.epochs)
    generator = torch.Generator().manual_seed(seed)
    fit(
        model,
        loss,
        split.x_fit,
        split.y_fit,
        epochs=spec.train.epochs,
        batch_size=spec.train.batch_size,
        optimizer=spec.train.optimizer,
        lr=params["lr"],
        weight_decay=params.get("weight_decay", 0.0),
        momentum=spec.train.momentum,
        lr_final=spec.train.lr_final,
        lr_schedule=spec.train.lr_schedule,
        weight_decay_on=spec.train.weight_decay_on,
        repeat=repeats(spec, len(split.y_fit)),
        drop_last=spec.train.drop_last,
        transforms=method.transform_list(params),
        generator=generator,
        on_epoch_end=on_epoch_end,
    )
    metrics = compute_metrics(last_logits[0], split.y_eval, task, num_classes)
    if spec.tie_break == "train_metric" and split.stage == "tune":
        # The fit part's score breaks ties between equal validation scores.
        fit_logits = eval_logits(model, split.x_fit, batch_size=4096)
        metrics[f"train_{metric}"] = compute_metrics(fit_logits, split.y_fit, task, num_classes, names=(metric,))[metric]
    curves = {
        "train_loss": train_loss,
        "heldout_loss": torch.stack(heldout_loss).tolist(),
        f"heldout_{metric}": heldout_metric.values(),
    }
    return RunResult(metrics, curves, time.perf_counter() - start)
