"""Hyper-parameter search: the ``hpo`` config group, its search space, and the split a search may see.

A search space is a mapping of dotted keys into the composed run config to a
distribution, in ``conf/hpo/<name>.yaml``::

    space:
      model.learning_rate: {loguniform: [0.005, 0.1]}
      model.num_leaves: {randint: [4, 64]}        # both ends included
      model.window: {choice: [16, 32, 64]}

Only ``model.*`` and ``features.*`` keys are hyper-parameters. The split
(``eval.*``, ``data.*``) and the labels (``task.*``) are not: a search that moved
them would change what is scored, not how well.

The objective is the task's primary metric on *validation blocks*: the data
set's valid segment (or, without one, the ``hpo.search_bars`` bars before the
test segment) cut into ``hpo.folds`` blocks, each predicted by a model refit on
everything before it. The frame a search gets ends ``purge`` bars before the
test segment, so neither a feature nor a label it sees was decided by a price of
the test segment (``search_split``). Each block is one rung of ASHA: a trial
reports its score over the blocks so far after each one, and the scheduler stops
the trials that trail.

Nothing here imports Ray; ``treum.commands.tune`` turns this into a Tune search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.data import Segments, slice_time
from treum.core.errors import ConfigError, did_you_mean

# distribution -> (number of arguments, what they are); integer ranges include both ends
DISTRIBUTIONS: dict[str, tuple[int | None, str]] = {
    "uniform": (2, "[low, high]"),
    "quniform": (3, "[low, high, step]"),
    "loguniform": (2, "[low, high], low > 0"),
    "randint": (2, "[low, high], integers, both included"),
    "qrandint": (3, "[low, high, step], integers, both included"),
    "lograndint": (2, "[low, high], integers >= 1, both included"),
    "choice": (None, "[a, b, ...]"),
}
TUNABLE_ROOTS = ("model", "features")  # what a hyper-parameter may be; the split, the labels and the data may not
FIXED_ROOTS = {
    "eval": "the walk-forward's split is what the search is scored on, not a hyper-parameter",
    "data": "the data (and its segments) is what the search is scored on, not a hyper-parameter",
    "task": "the task's labels define what is predicted; a search over them changes the question, not the answer",
}


@dataclass
class SearcherConfig:
    name: Literal["optuna", "random"] = "optuna"  # optuna: TPE through Ray Tune's OptunaSearch
    seed: int | None = None  # None: the run's seed
    start_from_defaults: bool = True  # the first trial is the model's own YAML, so the search sees the untuned figure


@dataclass
class SchedulerConfig:
    name: Literal["asha", "fifo"] = "asha"  # fifo: every trial runs every block
    grace_period: int = 1  # blocks a trial always gets before ASHA may stop it
    reduction_factor: float = 2.0  # ASHA keeps the best 1/reduction_factor at each rung

    def validate(self) -> str | None:
        if self.grace_period < 1:
            return f"scheduler.grace_period must be at least 1, got {self.grace_period}"
        if self.reduction_factor <= 1:
            return f"scheduler.reduction_factor must be above 1, got {self.reduction_factor}"
        return None


@dataclass
class ResourcesConfig:
    cpu: float = 1.0  # CPUs each trial holds (and the threads its model uses)
    gpu: float = 0.0  # a fraction of a GPU each trial asks for, when Ray sees one (0: never)

    def validate(self) -> str | None:
        if self.cpu <= 0:
            return f"resources.cpu must be above 0, got {self.cpu}"
        if self.gpu < 0:
            return f"resources.gpu cannot be negative, got {self.gpu}"
        if self.gpu > 1 and self.gpu != int(self.gpu):
            return f"resources.gpu above 1 must be a whole number of GPUs, got {self.gpu}"
        return None


@dataclass
class HpoConfig:
    """``conf/hpo/<name>.yaml``: what to search, how long, and with what."""

    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 16  # trials
    max_concurrent: int | None = None  # None: as many as the resources allow
    time_budget_s: float | None = None  # stop starting and running trials after this many seconds
    folds: int = 4  # validation blocks (ASHA's rungs)
    search_bars: int = 504  # bars before the test segment to validate on when the data has no valid segment
    searcher: SearcherConfig = field(default_factory=SearcherConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def validate(self) -> str | None:
        if not self.space:
            return "space is empty: name at least one key to search, e.g. model.learning_rate: {loguniform: [1e-3, 0.1]}"
        if self.num_samples < 1:
            return f"num_samples must be at least 1, got {self.num_samples}"
        if self.max_concurrent is not None and self.max_concurrent < 1:
            return f"max_concurrent must be at least 1 (or null), got {self.max_concurrent}"
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            return f"time_budget_s must be above 0 (or null), got {self.time_budget_s}"
        if self.folds < 1:
            return f"folds must be at least 1, got {self.folds}"
        if self.search_bars < 20:
            return f"search_bars must be at least 20, got {self.search_bars}"
        return self.scheduler.validate() or self.resources.validate()


@dataclass(frozen=True)
class Dimension:
    """One searched key: its dotted path, distribution and arguments."""

    key: str
    kind: str
    args: tuple[Any, ...]

    @property
    def root(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def leaf(self) -> str:
        return self.key.split(".", 1)[1]

    def corners(self) -> list[Any]:
        """Values at the edges of the range (and every choice): each must be a valid config value."""
        if self.kind == "choice":
            return list(self.args)
        lo, hi = self.args[0], self.args[1]
        return [lo, hi]


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(node, Mapping):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out[path] = v
            out.update(_flatten(v, path))
    return out


def parse_space(space: Mapping[str, Any], composed: Mapping[str, Any]) -> list[Dimension]:
    """Check every key of a search space against the composed config; the dimensions, or a ConfigError.

    ``composed`` is the run's config as plain data. An unknown key names the closest key
    that exists; a distribution is checked for its name, its arguments and their order.
    """
    known = _flatten(composed)
    dims = []
    for key, spec in space.items():
        key = str(key)
        root = key.split(".", 1)[0]
        if root in FIXED_ROOTS:
            raise ConfigError(f"hpo.space: '{key}' cannot be searched: {FIXED_ROOTS[root]} (search model.* or features.* keys)")
        if root not in TUNABLE_ROOTS or "." not in key:
            raise ConfigError(f"hpo.space: '{key}' is not a hyper-parameter; search keys of "
                              f"{' or '.join(r + '.*' for r in TUNABLE_ROOTS)} (e.g. model.learning_rate)")
        leaf = key.split(".", 1)[1]
        if key not in known or leaf == "name":
            siblings = [k for k in known if k.startswith(root + ".") and not k.endswith(".name")]
            raise ConfigError(f"hpo.space: '{key}' is not a key of the composed config{did_you_mean(key, siblings)} "
                              f"(keys of '{root}': {', '.join(s.split('.', 1)[1] for s in siblings) or 'none'})")
        dims.append(_dimension(key, spec))
    return dims


def _dimension(key: str, spec: Any) -> Dimension:
    where = f"hpo.space.{key}"
    if isinstance(spec, Mapping) and len(spec) > 1 and all(str(k) in DISTRIBUTIONS for k in spec):
        raise ConfigError(f"{where}: two distributions ({', '.join(map(str, spec))}); a command-line hpo.space override "
                          "merges with the file's, so it can change a distribution's arguments "
                          f"(hpo.space={{{key}: {{{next(iter(spec))}: [...]}}}}) but not its kind: write a search of "
                          "your own in conf/hpo/NAME.yaml for that")
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(f"{where}: give one distribution as a mapping, e.g. {{loguniform: [0.001, 0.1]}} "
                          f"(distributions: {', '.join(DISTRIBUTIONS)})")
    kind, args = next(iter(spec.items()))
    kind = str(kind)
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution '{kind}'{did_you_mean(kind, DISTRIBUTIONS)} "
                          f"(distributions: {', '.join(DISTRIBUTIONS)})")
    n, shape = DISTRIBUTIONS[kind]
    if not isinstance(args, (list, tuple)) or (n is not None and len(args) != n) or (n is None and len(args) < 2):
        raise ConfigError(f"{where}: {kind} takes {shape}, got {args!r}")
    args = tuple(args)
    if kind == "choice":
        if len(set(map(repr, args))) != len(args):
            raise ConfigError(f"{where}: choice lists a value twice: {list(args)}")
        return Dimension(key, kind, args)
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args):
        raise ConfigError(f"{where}: {kind} takes numbers {shape}, got {list(args)}")
    lo, hi = args[0], args[1]
    if kind in ("randint", "qrandint", "lograndint") and not all(float(a) == int(a) for a in args):
        raise ConfigError(f"{where}: {kind} takes integers {shape}, got {list(args)}")
    if lo >= hi:
        raise ConfigError(f"{where}: the low end {lo} must be below the high end {hi}")
    if kind in ("loguniform", "lograndint") and lo <= 0:
        raise ConfigError(f"{where}: {kind} needs a low end above 0, got {lo}")
    if n == 3 and not args[2] > 0:
        raise ConfigError(f"{where}: the step must be above 0, got {args[2]}")
    if kind in ("randint", "qrandint", "lograndint"):
        args = tuple(int(a) for a in args)
    return Dimension(key, kind, args)


def as_override(key: str, value: Any) -> str:
    """A Hydra command-line override that sets ``key`` to ``value`` (``model.num_leaves=31``)."""
    return f"{key}={_literal(value)}"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    text = str(value)
    return text if text.replace("_", "").replace("-", "").isalnum() else "'" + text.replace("'", "\\'") + "'"


@dataclass(frozen=True)
class SearchSplit:
    """What a search sees: the data up to ``end`` and the validation blocks it is scored on."""

    end: pd.Timestamp  # the last bar in the search's frame (before the test segment, less the purge)
    segments: Segments  # train as the data's; test = the validation span the blocks cut
    block_bars: int
    valid_bars: int  # each fold's own validation rows before its block (early stopping), as in the walk-forward
    source: str  # "the valid segment" or "the N bars before the test segment"
    test_start: pd.Timestamp

    def describe(self) -> str:
        return (f"validation blocks {self.segments.test[0].date()}..{self.segments.test[1].date()} ({self.source}), "
                f"data up to {self.end.date()}; the test segment from {self.test_start.date()} is never read")


def search_split(timestamps: pd.DatetimeIndex, segments: Segments, cfg: HpoConfig, purge: int, embargo: int) -> SearchSplit:
    """The validation span of a search and the last bar its frame may hold; nothing of the test segment.

    The span is the data's valid segment, else the ``search_bars`` bars before the test segment;
    it ends ``purge + embargo`` bars before the test segment, so the labels of its last rows are
    decided before the test segment starts. It is cut into ``folds`` blocks.
    """
    ts = pd.DatetimeIndex(np.unique(timestamps.values))
    first_test = int(np.searchsorted(ts, segments.test[0]))
    last = first_test - 1 - purge - embargo  # the last bar whose label a price of the test segment cannot decide
    if last <= 0:
        raise ConfigError("the data holds no bars before the test segment to search on; move data.segments.test later")
    if segments.valid is not None:
        start = int(np.searchsorted(ts, segments.valid[0]))
        source = "the valid segment"
    else:
        start = max(last - cfg.search_bars + 1, 0)
        source = f"the {cfg.search_bars} bars before the test segment (the data has no valid segment)"
    end = min(last, int(np.searchsorted(ts, segments.valid[1], side="right")) - 1) if segments.valid is not None else last
    span = end - start + 1
    if span < cfg.folds:
        raise ConfigError(f"the search's validation span {ts[start].date()}..{ts[max(end, start)].date()} holds {max(span, 0)} "
                          f"bars, fewer than hpo.folds={cfg.folds}; lengthen data.segments.valid or lower hpo.folds")
    block = int(math.ceil(span / cfg.folds))
    valid_bars = 0
    if segments.valid is not None:  # the folds of the search keep the walk-forward's shape: train, valid, block
        valid_bars = int(((ts >= segments.valid[0]) & (ts <= segments.valid[1])).sum())
    validation = Segments(train=segments.train, valid=None, test=(ts[start], ts[end]))
    return SearchSplit(ts[end], validation, block, valid_bars, source, segments.test[0])


def search_frame(frame: pd.DataFrame, split: SearchSplit) -> pd.DataFrame:
    """The rows a search may see: everything up to the split's end (never a row of the test segment)."""
    cut = slice_time(frame, end=split.end)
    if len(cut) and cut.index.get_level_values("timestamp").max() >= split.test_start:
        raise AssertionError("a search frame reached into the test segment")  # search_split guarantees it cannot
    return cut
