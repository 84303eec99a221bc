"""A spec's method resolved against the registries: its search space and how to build it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch
from torch import nn

from lossbench.bench.spec import THEN_PREFIX, MethodSpec, SpecError, check_value, value_kinds
from lossbench.losses import LOSSES, LossInfo
from lossbench.registry import Choice, FloatRange, HyperParam, IntRange
from lossbench.train import TRANSFORMS, compatible

Distribution = optuna.distributions.BaseDistribution


def _distribution(space: FloatRange | IntRange | Choice) -> Distribution:
    if isinstance(space, FloatRange):
        return optuna.distributions.FloatDistribution(float(space.low), float(space.high), log=space.log)
    if isinstance(space, IntRange):
        return optuna.distributions.IntDistribution(space.low, space.high, log=space.log)
    return optuna.distributions.CategoricalDistribution(list(space.options))


def _whole(space: FloatRange | IntRange | Choice, param: HyperParam) -> FloatRange | IntRange | Choice:
    """A spec's range with whole ends for a whole-number hyperparameter (registered as an integer range, or
    an int by default: MGS's n_samples) as an integer range: TOML's ``{ low = 4, high = 8 }`` is read as floats."""
    whole = isinstance(param.space, IntRange) or type(param.default) is int
    if whole and isinstance(space, FloatRange) and float(space.low).is_integer() and float(space.high).is_integer():
        return IntRange(int(space.low), int(space.high), space.log)
    return space


def suggest(trial: optuna.Trial, name: str, dist: Distribution) -> Any:
    """Ask the trial for one parameter (returns the enqueued value for enqueued trials)."""
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


def output_width(loss: LossInfo, task: str, num_classes: int) -> int:
    """Logit width the model needs for this loss on this task (one logit for binary sigmoid forms)."""
    if loss.signature == "sigmoid" and task == "multiclass":
        return 1
    return num_classes


def check_compatible(loss: LossInfo, task: str, num_classes: int, where: str) -> None:
    ok = {
        "softmax": task == "multiclass",
        "sigmoid": task == "multilabel" or (task == "multiclass" and num_classes == 2),
        "multilabel": task == "multilabel",
        "multilabel_sparse": task == "multilabel",
    }.get(loss.signature, False)
    if not ok:
        kind = "two-class " if loss.signature == "sigmoid" else ""
        raise SpecError(
            f"{where}: loss {loss.name!r} ({loss.signature} signature, for {kind}{'/'.join(loss.tasks)} "
            f"tasks) cannot run on a {task} dataset with {num_classes} classes; restrict the method with "
            f"datasets = [...]"
        )


# The share of the training samples whose classes a stratified validation part may leave out (rare classes,
# a few samples each: warned of, see execution._warn_unscored_classes) before val_fraction is refused as too small.
RARE_SHARE = 0.02


def check_validation_part(split: Any, spec: Any, where: str) -> None:
    """A tuning split (``y_fit``, ``y_eval``) whose validation part can score: not empty, and
    (stratified) holding every class that has two samples or more, which a ``val_fraction`` too
    small for the class leaves out, but for rare classes holding at most ``RARE_SHARE`` of the
    samples together (long-tailed data: val_fraction 0.5 for a class of two samples is no remedy)."""
    if len(split.y_eval) == 0:
        raise SpecError(f"{where}: val_fraction = {spec.val_fraction} leaves no validation sample "
                        f"out of {len(split.y_fit)} training samples")  # fmt: skip
    if split.task != "multiclass" or spec.val_split != "stratified":
        return
    total = torch.bincount(torch.cat([split.y_fit, split.y_eval]).cpu(), minlength=split.num_classes)
    held = torch.bincount(split.y_eval.cpu(), minlength=split.num_classes)
    missing = (held == 0) & (total >= 2)
    if int(total[missing].sum()) <= RARE_SHARE * int(total.sum()):
        return
    c = int(missing.nonzero()[0])
    name, n = split.dataset.class_names[c], int(total[c])
    raise SpecError(f"{where}: val_fraction = {spec.val_fraction} is too small for class {name!r} ({n} training "
                    f"samples): none is held out for validation; use val_fraction >= {1 / n:.3g}")  # fmt: skip


@dataclass(frozen=True)
class Method:
    spec: MethodSpec
    loss: LossInfo
    transforms: tuple[tuple[str, dict[str, Any], tuple[HyperParam, ...]], ...]
    then: Method | None = None  # a two-stage method's second stage (its spec.then), resolved alike

    @property
    def name(self) -> str:
        return self.spec.name

    def stage_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The second stage's parameters from a run's: its ``then.``-keys without the prefix, and
        the shared ones (lr, weight decay, model); the first stage's own keys left out."""
        own = {k[len(THEN_PREFIX) :]: v for k, v in params.items() if k.startswith(THEN_PREFIX)}
        shared = {k: v for k, v in params.items() if "." not in k or k.startswith("model.")}
        return {**shared, **own}

    def search_space(self, shared: dict[str, FloatRange | Choice]) -> dict[str, Distribution]:
        """Optuna distributions keyed ``lr``, ``weight_decay``, ``loss.<p>``, ``<transform>.<p>``.

        A registered hyperparameter is tuned when the method's ``search`` table names it or it has
        a registered search space, unless the method fixes it (``params``) or schedules it.
        """
        space = {k: _distribution(r) for k, r in shared.items()}
        own = [("loss", self.spec.params, self.loss.hyperparams)]
        own += [(tname, fixed, params) for tname, fixed, params in self.transforms]
        for prefix, fixed, params in own:
            for p in params:
                key = f"{prefix}.{p.name}"
                if _tuned(self.spec, key, fixed, p.space):
                    space[key] = _distribution(_whole(self.spec.search.get(key, p.space), p))
        # The search table may also tune a loss argument that is no registered hyperparameter
        # (EXACT's sigma_min); registered ones were decided above.
        registered = {f"{prefix}.{p.name}" for prefix, _, params in own for p in params}
        for key, r in self.spec.search.items():
            if key not in registered and not key.startswith(THEN_PREFIX):
                space[key] = _distribution(r)
        if self.then is not None:
            space.update({THEN_PREFIX + k: d for k, d in self.then.search_space({}).items()})
        return space

    def main_hyperparameter(self, shared: dict[str, FloatRange]) -> str:
        """The parameter a report plots the metric against: the first method-specific one, else lr."""
        own = [k for k in self.search_space(shared) if k not in shared]
        return own[0] if own else "lr"

    def searched_loss_options(self, params: dict[str, Any]) -> dict[str, Any]:
        """The loss's options a run's ``params`` set (``loss.<name>``); a grid's "default" (None) sets none."""
        return {k[5:]: v for k, v in params.items() if k.startswith("loss.") and v is not None}

    def loss_kwargs(self, params: dict[str, Any], requirements: dict[str, Any]) -> dict[str, Any]:
        tuned = self.searched_loss_options(params)
        tuned.update({k[5:]: s.start for k, s in self.spec.schedule.items()})  # the first epoch's value
        needed = {r: requirements[r] for r in self.loss.requires}
        return {**self.spec.params, **tuned, **needed}

    def transform_list(self, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for tname, fixed, _ in self.transforms:
            tuned = {k[len(tname) + 1 :]: v for k, v in params.items() if k.startswith(f"{tname}.") and v is not None}
            out.append((tname, {**fixed, **tuned}))
        return out

    def build_loss(self, params: dict[str, Any], requirements: dict[str, Any], task: str, validate: bool = True) -> nn.Module:
        module = self.loss.module(**self.loss_kwargs(params, requirements), validate=validate)
        return LossAdapter(module, self.loss.signature, task)


class LossAdapter(nn.Module):
    """Feeds a loss the logits and targets in its own signature.

    The bench stores single-label targets as class indices and multi-label targets as dense
    0/1 rows; a binary sigmoid loss gets the model's single logit as a (B,) vector, a sparse
    multi-label loss gets padded positive-index lists.
    """

    def __init__(self, loss: nn.Module, signature: str, task: str) -> None:
        super().__init__()
        self.loss, self.signature, self.task = loss, signature, task
        self._squeeze = signature == "sigmoid" and task == "multiclass"
        self._sparse = signature == "multilabel_sparse"

    def forward(self, logits: torch.Tensor, target: torch.Tensor, reduction: str | None = None, **overrides: Any) -> torch.Tensor:
        if self._squeeze:
            logits = logits.squeeze(-1)
        elif self._sparse:
            target = dense_to_index_lists(target)
        return self.loss(logits, target, reduction=reduction, **overrides)

    def option(self, name: str) -> Any:
        return self.loss.option(name)

    def options(self) -> dict[str, Any]:
        return self.loss.options()

    @property
    def adapted_loss(self) -> nn.Module:
        """The loss this adapter feeds: what a pack judges (``train._base.adapted_loss``)."""
        return self.loss

    def unwrapped(self) -> nn.Module:
        """The loss itself where it takes the bench's logits and targets as they are, else this
        adapter: what a training loop should call (one module call fewer per step)."""
        return self if self._squeeze or self._sparse else self.loss


def dense_to_index_lists(target: torch.Tensor, pad: int = -100) -> torch.Tensor:
    """0/1 rows (B, C) -> positive class indices (B, K) padded with ``pad`` (K = max positives)."""
    positive = target > 0.5
    k = max(int(positive.sum(1).max()), 1)
    # Sort so positives come first, keeping class order among them.
    order = torch.argsort((~positive).to(torch.int8), dim=1, stable=True)[:, :k]
    taken = positive.gather(1, order)
    return torch.where(taken, order, torch.full_like(order, pad))


# Loss arguments a spec may not set: the bench decides them.
BENCH_OWNED = {"ignore_index": "the bench's targets hold no ignored entries, so it would only drop a real class "
                               "(or change nothing)"}  # fmt: skip


def _check_bench_owned(where: str, loss: Any, arguments: dict[str, inspect.Parameter]) -> None:
    """A loss's own registration may not tune what the bench sets, nor default it to what drops a class (a user's
    loss registering ignore_index with a search space, or with 0 for its default, trained without class 0)."""
    for p in loss.hyperparams:
        if p.name in BENCH_OWNED and p.space is not None:
            raise SpecError(f"{where}: loss {loss.name!r} registers a search space for {p.name}, which the bench sets: "
                            f"{BENCH_OWNED[p.name]}; register it without one")  # fmt: skip
    default = arguments["ignore_index"].default if "ignore_index" in arguments else None
    if isinstance(default, int) and not isinstance(default, bool) and default >= 0:
        raise SpecError(f"{where}: loss {loss.name!r} defaults ignore_index to {default}, a class index: every target "
                        "of that class would be ignored; default it to a negative number (-100, as PyTorch)")  # fmt: skip


def _check_search(where: str, key: str, space: FloatRange | Choice, param: inspect.Parameter) -> None:
    """A search range or grid that can tune this argument: a number range for a number, every
    choice of the argument's type."""
    name = key.split(".", 1)[1]
    if name in BENCH_OWNED:
        raise SpecError(f"{where}: search key {key!r} cannot be tuned: {BENCH_OWNED[name]}")
    kinds = value_kinds(param)
    if kinds is None:
        return
    if not set(kinds[0]) - {type(None)}:
        raise SpecError(f"{where}: search key {key!r} cannot be tuned: it takes {param.annotation}, not a number or a name")
    if isinstance(space, FloatRange) and not {int, float} & set(kinds[0]):
        raise SpecError(f"{where}: search key {key!r} takes {param.annotation}; a range of numbers cannot tune it "
                        "(give choices = [...])")  # fmt: skip
    for option in space.options if isinstance(space, Choice) else ():
        if option is not None:
            check_value(f"{where} search", key, option, param)


def resolve_method(spec: MethodSpec) -> Method:
    """The method's loss, transforms and search checked against the registries; a second stage
    (``spec.then``) is resolved as a method of its own, its search keys stripped of ``then.``."""
    then = None
    if spec.then is not None:
        stage = spec.then
        search = {k[len(THEN_PREFIX) :]: v for k, v in spec.search.items() if k.startswith(THEN_PREFIX)}
        then = _resolve(MethodSpec(f"{spec.name} then", stage.loss, dict(stage.params), stage.transforms, search))
        first = replace(spec, search={k: v for k, v in spec.search.items() if not k.startswith(THEN_PREFIX)})
        return replace(_resolve(first), spec=spec, then=then)  # the spec as written, its then.-keys included
    return _resolve(spec)


def _tuned(spec: MethodSpec, key: str, fixed: dict[str, Any], registered: Any) -> bool:
    """Whether the option ``key`` (``loss.<p>``, ``<transform>.<p>``) is tuned: the method's ``search`` names
    it or it has a ``registered`` search space, unless the method fixes it (``fixed``) or schedules it."""
    return key.split(".", 1)[1] not in fixed and key not in spec.schedule and (key in spec.search or registered is not None)


def _resolve(spec: MethodSpec) -> Method:
    where = f"method {spec.name!r}"
    if spec.loss not in LOSSES:
        raise SpecError(f"{where}: unknown loss {spec.loss!r}; registered: {', '.join(LOSSES.names())}")
    loss = LOSSES.get(spec.loss)
    names = {p.name for p in loss.hyperparams}
    arguments = {k: v for k, v in _loss_arguments(loss).items() if k not in loss.requires}
    _check_bench_owned(where, loss, arguments)
    accepted = set(arguments)
    for key, value in spec.params.items():
        if key not in accepted:
            raise SpecError(f"{where}: loss {loss.name!r} has no parameter {key!r}; it takes {sorted(accepted)}")
        if key in BENCH_OWNED:
            raise SpecError(f"{where}: params.{key} cannot be set: {BENCH_OWNED[key]}")
        check_value(where, f"params.{key}", value, arguments[key])
    transforms = []
    options = {f"loss.{k}": p for k, p in arguments.items()}
    twice = next((t.name for i, t in enumerate(spec.transforms) if t.name in {u.name for u in spec.transforms[:i]}), None)
    if twice is not None:  # (its copies share their keys <transform>.<param>: a search or schedule would set both)
        raise SpecError(f"{where}: transform {twice!r} is listed twice; list it once")
    for t in spec.transforms:
        if t.name not in TRANSFORMS:
            raise SpecError(f"{where}: unknown transform {t.name!r}; registered: {', '.join(TRANSFORMS.names())}")
        info = TRANSFORMS.get(t.name)
        params = tuple(info.hyperparams)
        signature = inspect.signature(info.factory.__init__).parameters
        known = {p.name for p in params}
        for key, value in t.params.items():
            if key not in known:
                raise SpecError(f"{where}: transform {t.name!r} has no parameter {key!r}; it takes {sorted(known)}")
            check_value(where, f"{t.name}.{key}", value, signature[key])
        # (searched, by the method's table or the registered space, an option may be set)
        searched = [when for when in loss.batch_level_when
                    if _tuned(spec, f"loss.{when}", spec.params, next((p.space for p in loss.hyperparams if p.name == when), None))]  # fmt: skip
        settings = {**spec.params, **dict.fromkeys(searched, True)}
        if not compatible(t.name, loss, settings):
            when = next((w for w in loss.batch_level_when if settings.get(w) not in (None, False)), None)
            raise SpecError(f"{where}: transform {t.name!r} needs per-sample losses; {loss.name!r} is batch-level"
                            f"{'' if loss.batch_level else f' with {when} set'}"
                            f"{f' (its search may set it: fix params.{when} = false)' if when in searched else ''}")  # fmt: skip
        transforms.append((t.name, dict(t.params), params))
        options.update({f"{t.name}.{p.name}": signature[p.name] for p in params})
    method = Method(spec, loss, tuple(transforms))
    for keys, verb in ((spec.search, "searched"), (spec.schedule, "scheduled")):
        owned = next((key for key in keys if key.startswith("loss.") and key[5:] in BENCH_OWNED), None)
        if owned is not None:
            raise SpecError(f"{where}: {owned} cannot be {verb}: {BENCH_OWNED[owned[5:]]}")
    valid_keys = {f"loss.{n}" for n in (names | accepted) - BENCH_OWNED.keys()}
    valid_keys |= {f"{t}.{p.name}" for t, _, ps in transforms for p in ps}
    for key in spec.search:
        if key not in valid_keys:
            raise SpecError(f"{where}: search key {key!r} names no tunable parameter; use one of {sorted(valid_keys)}")
    fixed = {f"loss.{k}" for k in spec.params} | {f"{t}.{k}" for t, kwargs, _ in transforms for k in kwargs}
    for key, space in spec.search.items():
        if key in fixed:
            raise SpecError(f"{where}: {key!r} is both fixed in params and searched")
        _check_search(where, key, space, options[key])
    for key in spec.schedule:
        if not key.startswith("loss.") or key[5:] not in accepted:
            raise SpecError(f"{where}: schedule key {key!r} names no parameter of loss {loss.name!r}; "
                            f"use one of {sorted('loss.' + a for a in accepted)}")  # fmt: skip
        if key[5:] in spec.params:
            raise SpecError(f"{where}: {key!r} is both fixed in params and scheduled")
    return method


def set_loss_option(loss: nn.Module, name: str, value: Any) -> None:
    """Change one of a built loss's arguments between epochs (a scheduled temperature, say)."""
    options = getattr(loss, "_options", None)  # the generated module twins keep them there
    if options is not None and name in options:
        options[name] = value
    elif hasattr(loss, name) and not isinstance(getattr(loss, name), (nn.Parameter, torch.Tensor)):
        setattr(loss, name, value)
    else:
        raise SpecError(f"loss {type(loss).__name__} has no option {name!r} that can change between epochs")


def _loss_arguments(loss: LossInfo) -> dict[str, inspect.Parameter]:
    """Arguments a method may fix, by name: the function's, and module-only options (e.g. EXACT's
    ``learn_sigma`` or ``sigma_min`` schedule)."""
    params = list(inspect.signature(loss.function).parameters.values())[2:]
    params += inspect.signature(loss.module).parameters.values()
    return {p.name: p for p in params if p.name not in {"self", "reduction", "validate", "kwargs"}}
