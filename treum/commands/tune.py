"""``treum tune``: a hyper-parameter search on Ray Tune, then the best configuration trained like ``treum train``.

    treum tune model=gbm_direction data=sp500 hpo=gbm_direction hpo.num_samples=16
    treum tune model=ts_transformer hpo.resources.gpu=0.5 tune.address=auto

1. The run's config is composed and validated, and so is the search space
   (``treum.core.hpo``): every key must exist, every range make sense, and the model
   must accept the values at both ends of each range before any trial starts.
2. The data is prepared once; the search gets only the rows before the test segment
   (less the purge), cut into validation blocks. Each trial refits a model before each
   block, Optuna suggests the values (the first trial is the model's own YAML), and
   ASHA stops the trials that trail after a block.
3. Every trial is a row of ``ml_training_jobs`` (job type ``tuning``), written as it
   runs; the search itself is one more row. Ctrl-C stops the search: its running
   trials and the search end ``cancelled`` and nothing is registered. A cancelled row
   (``POST /training/jobs/{id}/cancel``) stops its trial, or the whole search.
4. The best trial's values are then evaluated once on the test segment beside the
   task's baselines and registered, exactly as ``treum train`` does; the version's
   metadata names the search, its best trial and the number of trials.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from ray.tune import Callback, Stopper

from treum.commands.hydra_app import run_app
from treum.core.errors import ConfigError, TreumError
from treum.core.hpo import Dimension, HpoConfig, SearchSplit, as_override, parse_space, search_frame, search_split

OBJECTIVE = "objective"
WORST = 1e12  # what a trial whose metric is not finite reports, signed so that it loses


@dataclass
class TuneSettings:
    """``tune:`` in the root config: where the search runs."""

    address: str | None = None  # null: Ray on this machine, started for the search; auto or host:port: that cluster
    num_cpus: int | None = None  # Ray on this machine: the CPUs it may use (null: all)
    num_gpus: int | None = None  # Ray on this machine: the GPUs it may use (null: those it finds)


@dataclass
class TrialContext:
    """What every trial gets (through Ray's object store): the search's data and how to score it."""

    model: str
    model_values: dict[str, Any]
    task: dict[str, Any]
    features: dict[str, Any]
    frame: pd.DataFrame  # up to the search's end: features and labels
    panel: pd.DataFrame | None  # the raw bars up to the same end, when features.* are searched or labels are recomputed
    folds: list[Any]
    sequential: bool
    labels_after_the_fact: bool
    metric: str
    higher_is_better: bool
    cpu: float
    seed: int
    env: dict[str, str] = field(default_factory=dict)  # the driver's plugin and registry settings, for the trial's process


# ---------------------------------------------------------------------------------------------- the trial


def device_settings(spec: Any, cpus: float, gpu: bool, searched: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Config values that put a model on its trial's resources.

    ``num_threads`` (when the model has one and the search does not choose it) gets the trial's
    CPUs. With a GPU (assigned by Ray and visible to torch), a model that declares the ``gpu``
    capability gets ``accelerator: auto``, or the values of its spec's ``gpu_config`` (a
    LightGBM built with GPU support would name ``device_type: gpu`` there).
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    out: dict[str, Any] = {}
    if "num_threads" in names and "num_threads" not in searched:
        out["num_threads"] = max(1, int(cpus))
    if gpu and "gpu" in spec.capabilities:
        settings = getattr(spec, "gpu_config", None)
        out.update(dict(settings) if settings else ({"accelerator": "auto"} if "accelerator" in names else {}))
    return out


def trial_values(ctx: TrialContext, params: dict[str, Any], gpu: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model values, features values) of a trial: the run's, the trial's parameters, its resources."""
    from treum.core.plugins import create_plugin_registry

    spec = create_plugin_registry().model(ctx.model)
    model, features = dict(ctx.model_values), dict(ctx.features)
    for key, value in params.items():
        root, leaf = key.split(".", 1)
        (model if root == "model" else features)[leaf] = value
    searched = frozenset(k.split(".", 1)[1] for k in params if k.startswith("model."))
    model.update(device_settings(spec, ctx.cpu, gpu, searched))
    return model, features


def run_trial(params: dict[str, Any], ctx: TrialContext) -> None:
    """One trial: refit before each validation block, report the score over the blocks so far after each."""
    os.environ.update(ctx.env)  # the same plugins and home as the driver, even on a cluster started elsewhere
    import ray
    from ray import tune

    from treum.core.config import build_spec_config
    from treum.core.evaluation import walk_forward
    from treum.core.model import build_model
    from treum.core.plugins import create_plugin_registry
    from treum.core.task import build_task

    try:
        import torch

        torch.set_num_threads(max(1, int(ctx.cpu)))
        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        cuda = False
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    on_gpu = bool(gpu_ids) and cuda
    plugins = create_plugin_registry()
    spec = plugins.model(ctx.model)
    model_values, feature_values = trial_values(ctx, params, on_gpu)
    config = build_spec_config(spec, model_values)
    task = build_task(plugins.task(ctx.task["name"]), ctx.task)
    frame = ctx.frame
    if feature_values != ctx.features and ctx.panel is not None:  # features.* searched: recompute them
        feats = plugins.feature_set(ctx.features["name"]).compute(ctx.panel, feature_values)
        frame = ctx.panel.join(feats).join(task.make_targets(ctx.panel))
    labels_as_of = (lambda end: task.labels_as_of(ctx.panel, end)) if ctx.labels_after_the_fact else None
    label_cols = [c for c in frame.columns if str(c).startswith("target")]
    node = ray.get_runtime_context().get_node_id()
    parts, fit_seconds = [], 0.0
    for k, fold in enumerate(ctx.folds):
        res = walk_forward(ctx.model, lambda: build_model(spec, config, task), frame, [fold], ctx.sequential,
                           labels_as_of=labels_as_of)
        fit_seconds += res.fit_seconds
        parts.append(res.predictions)
        oos = pd.concat(parts).join(frame[label_cols])
        value = float(task.score(oos, 0, ctx.seed).get(ctx.metric, float("nan")))
        finite = math.isfinite(value)
        objective = value if finite else (-WORST if ctx.higher_is_better else WORST)
        report = {OBJECTIVE: objective, "value": value if finite else None, "block": k + 1, "blocks": len(ctx.folds),
                  "rows": int(len(oos)), "fit_seconds": round(fit_seconds, 3)}
        if k == 0:
            report.update({"node": node, "gpu_ids": ",".join(gpu_ids), "device": "cuda" if on_gpu else "cpu"})
        tune.report(report)


# ---------------------------------------------------------------------------------------------- the driver


@dataclass
class TrialRecord:
    number: int
    trial_id: str
    params: dict[str, Any]
    job: Any
    last: dict[str, Any] = field(default_factory=dict)
    first: dict[str, Any] = field(default_factory=dict)
    status: str = "running"  # completed, stopped_early, failed, cancelled
    error: str | None = None


def _summary(rec: TrialRecord, metric: str) -> dict[str, Any]:
    last = rec.last
    return {"objective_metric": metric, metric: last.get("value"), "blocks_run": last.get("block", 0),
            "blocks": last.get("blocks"), "rows": last.get("rows"), "fit_seconds": last.get("fit_seconds"),
            "stopped_early": rec.status == "stopped_early", "node": rec.first.get("node"),
            "gpu_ids": rec.first.get("gpu_ids") or "", "device": rec.first.get("device"), "trial": rec.trial_id}


class TrialRows(Callback):
    """A Tune callback that keeps a job row per trial and shows the search's progress."""

    def __init__(self, batch, search_id: str, ctx: TrialContext, base: dict, data_cfg: dict, resources: dict,
                 progress, bar, console, num_samples: int) -> None:
        self.batch, self.search_id, self.ctx, self.base, self.data_cfg = batch, search_id, ctx, base, data_cfg
        self.resources, self.progress, self.bar, self.console, self.num_samples = resources, progress, bar, console, num_samples
        self.records: dict[str, TrialRecord] = {}
        self.cancelled: set[str] = set()  # trials whose row someone cancelled: the stopper stops them
        self.search_cancelled = False
        self.best: float | None = None

    def __getstate__(self):  # Tune pickles its run config for a restore we never do; the rows stay here
        return {}

    def on_trial_start(self, iteration, trials, trial, **info):
        ctx, number, params = self.ctx, len(self.records) + 1, dict(trial.config)
        values = {**ctx.model_values, **{k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("model.")}}
        job = self.batch.create(f"trial:{ctx.model}:{self.data_cfg.get('name')}:{number}", "tuning",
                                {"name": ctx.model, **values},
                                {**self.base, "search": self.search_id, "trial": trial.trial_id, "number": number,
                                 "params": params},
                                self.data_cfg, self.resources)
        job.start()
        self.records[trial.trial_id] = TrialRecord(number, trial.trial_id, params, job)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        if not rec.first:
            rec.first = dict(result)
        rec.last = dict(result)
        if not rec.job.progress(_summary(rec, self.ctx.metric)):  # the row was cancelled: stop the trial
            self.cancelled.add(trial.trial_id)
            if self.batch.registry.job(self.search_id).status == "cancelled":
                self.search_cancelled = True

    def on_trial_complete(self, iteration, trials, trial, **info):
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        blocks = len(self.ctx.folds)
        if trial.trial_id in self.cancelled:
            rec.status = "cancelled"
        else:
            full = rec.last.get("block", 0) >= blocks
            rec.status = "completed" if full else "stopped_early"
            rec.job.finish("completed", metrics=_summary(rec, self.ctx.metric))  # stopped_early says if ASHA stopped it
        self._show(rec)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        rec.status, rec.error = "failed", _trial_error(trial)
        rec.job.finish("failed", metrics=_summary(rec, self.ctx.metric), exc=TrialFailed(rec.error))
        self._show(rec)

    def _show(self, rec: TrialRecord) -> None:
        ctx, value = self.ctx, rec.last.get("value")
        if value is not None and rec.status == "completed":
            better = self.best is None or (value > self.best if ctx.higher_is_better else value < self.best)
            self.best = value if better else self.best
        shown = ", ".join(f"{k}={_short(v)}" for k, v in rec.params.items())
        what = {"completed": f"{ctx.metric} {_short(value)} over {rec.last.get('block')} blocks",
                "stopped_early": f"stopped by ASHA after {rec.last.get('block')} of {len(ctx.folds)} blocks "
                                 f"({ctx.metric} {_short(value)})",
                "failed": f"[red]failed[/]: {rec.error}", "cancelled": "cancelled"}[rec.status]
        self.console.print(f"trial {rec.number}/{self.num_samples}: {what}; {shown}")
        self.progress.update(self.bar, advance=1, description=f"trials (best {ctx.metric} {_short(self.best)})")


class TrialFailed(Exception):
    """A trial's exception, as Ray reported it."""


def _trial_error(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        lines = [line for line in Path(path).read_text(errors="replace").strip().splitlines() if line.strip()]
        return lines[-1][:500] if lines else "the trial raised"
    return "the trial raised"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


class CancelledRows(Stopper):
    """Stops the trials whose row was cancelled, and the whole search when its own row was."""

    def __init__(self, rows: TrialRows):
        self.rows = rows

    def __getstate__(self):
        return {}

    def __call__(self, trial_id, result):
        return trial_id in self.rows.cancelled

    def stop_all(self):
        return self.rows.search_cancelled


def _domain(dim: Dimension):
    from ray import tune

    a = dim.args
    return {
        "uniform": lambda: tune.uniform(a[0], a[1]),
        "quniform": lambda: tune.quniform(a[0], a[1], a[2]),
        "loguniform": lambda: tune.loguniform(a[0], a[1]),
        "randint": lambda: tune.randint(a[0], a[1] + 1),  # Ray's upper end is excluded; ours is included
        "qrandint": lambda: tune.qrandint(a[0], a[1], a[2]),
        "lograndint": lambda: tune.lograndint(a[0], a[1] + 1),
        "choice": lambda: tune.choice(list(a)),
    }[dim.kind]()


def contains(dim: Dimension, value: Any) -> bool:
    """Whether ``value`` (the YAML's) is a point of the dimension, so the search may start from it."""
    if dim.kind == "choice":
        return value in dim.args
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if dim.kind in ("randint", "qrandint", "lograndint") and float(value) != int(value):
        return False
    return dim.args[0] <= value <= dim.args[1]


def check_space(dims: list[Dimension], spec: Any, model_values: dict[str, Any], plugins: Any, cfg: DictConfig) -> None:
    """The model (and feature set) must accept the values at both ends of every range, before any trial."""
    from treum.commands.compose import to_dict
    from treum.core.config import build_spec_config

    for dim in dims:
        for value in dim.corners():
            if dim.root == "model":
                try:
                    build_spec_config(spec, {**model_values, dim.leaf: value})
                except ConfigError as exc:
                    raise ConfigError(f"hpo.space.{dim.key}: model '{spec.name}' refuses {value!r}: {exc}") from None
            else:
                feats = to_dict(cfg.features)
                config_cls = getattr(plugins.feature_set(feats["name"]), "config_cls", None)
                if config_cls is None:  # nothing to stop a window of -5, a feature that reads the future
                    raise ConfigError(f"hpo.space.{dim.key}: feature set '{feats['name']}' declares no config class to "
                                      "validate searched values against, so its keys cannot be searched")
                from treum.core.config import build_config

                try:
                    build_config(config_cls, {**feats, dim.leaf: value}, "features")
                except ConfigError as exc:
                    raise ConfigError(f"hpo.space.{dim.key}: the feature set refuses {value!r}: {exc}") from None


def load_hpo(cfg: DictConfig, plugins: Any, overrides: list[str]) -> tuple[DictConfig, str, HpoConfig]:
    """The run's config with its hpo group chosen (the model's own search when none is), and the search config."""
    from treum.commands.compose import compose_run, to_dict
    from treum.core.config import build_config

    name = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=")[0] == "hpo"), None)
    if cfg.get("hpo") is None:
        model = str(cfg.model.name)
        try:
            cfg = compose_run([*overrides, f"hpo={model}"], plugins)
        except ConfigError as exc:
            raise ConfigError(f"choose a search space: hpo=NAME (conf/hpo/NAME.yaml); model '{model}' has no "
                              f"conf/hpo/{model}.yaml of its own ({exc})") from None
        name = model
    hpo = build_config(HpoConfig, to_dict(cfg.hpo), "hpo", "the search")
    return cfg, str(name), hpo


def trial_resources(hpo: HpoConfig, cluster: dict[str, float]) -> tuple[dict[str, float], str]:
    """The resources each trial asks for, and a line saying where the trials run.

    A trial asks for ``hpo.resources.gpu`` of a GPU only when the config asks for one and the
    cluster has a GPU; otherwise it runs on CPUs and the line says why.
    """
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    if hpo.resources.cpu > cpus:
        raise ConfigError(f"hpo.resources.cpu={hpo.resources.cpu} is more than the {cpus:g} CPUs the Ray cluster has; "
                          "lower it or join a larger cluster (tune.address=...)")
    out = {"cpu": hpo.resources.cpu, "gpu": 0.0}
    if hpo.resources.gpu > 0 and gpus > 0:
        if hpo.resources.gpu > gpus:
            raise ConfigError(f"hpo.resources.gpu={hpo.resources.gpu} is more than the {gpus:g} GPUs the Ray cluster has")
        out["gpu"] = hpo.resources.gpu
        where = f"each trial on {hpo.resources.cpu:g} CPU and {hpo.resources.gpu:g} GPU ({gpus:g} GPUs in the cluster)"
    elif hpo.resources.gpu > 0:
        where = f"each trial on {hpo.resources.cpu:g} CPU: hpo.resources.gpu={hpo.resources.gpu:g}, but Ray sees no GPU"
    else:
        where = f"each trial on {hpo.resources.cpu:g} CPU ({cpus:g} CPUs in the cluster)"
    return out, where


def start_ray(settings: TuneSettings, env: dict[str, str]) -> bool:
    """Join the cluster of ``tune.address`` or start Ray here; True when this call started it (and must stop it)."""
    import logging

    import ray

    if ray.is_initialized():  # inside a Ray task (a search started over HTTP): the cluster that serves
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False,
                              "runtime_env": {"env_vars": env}}
    if settings.address:
        ray.init(address=settings.address, **kwargs)
    else:
        ray.init(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, **kwargs)
    return True


def worker_env() -> dict[str, str]:
    """What a trial's process needs to find the same plugins and registry home as the driver."""
    from treum.commands.compose import SEARCHPATH_ENV
    from treum.core.plugins import find_plugins_toml
    from treum.registry.store import treum_home

    env = {"TREUM_HOME": str(treum_home()), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    toml = find_plugins_toml()
    if toml is not None:
        env["TREUM_PLUGINS_TOML"] = str(Path(toml).resolve())
    if os.environ.get(SEARCHPATH_ENV):
        env[SEARCHPATH_ENV] = os.environ[SEARCHPATH_ENV]
    return env


def build_search(prep: Any, hpo: HpoConfig, plugins: Any, features_cfg: dict) -> tuple[SearchSplit, pd.DataFrame,
                                                                                   pd.DataFrame, list[Any]]:
    """(split, panel, frame, folds) of a search: the bars up to the split's end, their features and labels
    recomputed on them alone, and the validation blocks; nothing of it depends on a price of the test segment."""
    from treum.core.data import slice_time
    from treum.core.evaluation import WalkForwardConfig, make_folds

    split = search_split(prep.frame.index.get_level_values("timestamp"), prep.segments, hpo, prep.purge,
                         prep.eval_cfg.embargo)
    panel = slice_time(prep.panel, end=split.end)
    frame = search_frame(panel.join(plugins.feature_set(features_cfg["name"]).compute(panel, features_cfg))
                         .join(prep.task.make_targets(panel)), split)
    wf = WalkForwardConfig(refit_every=split.block_bars, window=prep.eval_cfg.window,
                           window_bars=prep.eval_cfg.window_bars, embargo=prep.eval_cfg.embargo, bootstrap=0,
                           seed=prep.eval_cfg.seed)
    folds = make_folds(frame.index.get_level_values("timestamp"), split.segments, wf, prep.purge,
                       valid_len=split.valid_bars)
    return split, panel, frame, folds


@dataclass
class SearchOutcome:
    search_id: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    untuned: TrialRecord | None
    final: Any = None  # the RunOutcome of the best configuration's test-segment run
    interrupted: bool = False


def search(cfg: DictConfig, plugins: Any, overrides: list[str], run_dir: Path, hpo_name: str, hpo: HpoConfig,
           adopt: str | None = None) -> SearchOutcome:
    """Run the search, then train, evaluate and register the best configuration (see the module docstring)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from treum.commands.compose import to_dict
    from treum.commands.output import console, progress_bar
    from treum.commands.run import open_registry, prepare
    from treum.core.config import build_config, config_dict

    spec = plugins.model(str(cfg.model.name))
    model_values = to_dict(cfg.model)
    dims = parse_space(hpo.space, to_dict(cfg))
    check_space(dims, spec, model_values, plugins, cfg)
    settings = build_config(TuneSettings, to_dict(cfg.get("tune") or {}), "tune")
    actor = str(cfg.get("actor") or "cli")
    registry = open_registry(cfg)
    data_cfg = to_dict(cfg.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    records: list[TrialRecord] = []
    started_ray = False
    try:
        with registry.job_batch(actor) as batch:
            task_spec = plugins.task(str(cfg.task.name))
            base = {"hpo": hpo_name, "space": {d.key: {d.kind: list(d.args)} for d in dims},
                    "objective": task_spec.primary_metric, "mode": "max" if task_spec.higher_is_better else "min"}
            search_job = batch.adopt(adopt) if adopt else batch.create(
                f"search:{spec.name}:{data_cfg['name']}", "tuning", {"name": spec.name, **model_values},
                {**base, "role": "search", "num_samples": hpo.num_samples, "searcher": config_dict(hpo.searcher),
                 "scheduler": config_dict(hpo.scheduler), "eval": to_dict(cfg.eval), "task": to_dict(cfg.task)},
                data_cfg, config_dict(hpo.resources))
            with search_job.running():
                prep = prepare(cfg, plugins)
                if prep.row_folds is not None:
                    raise ConfigError(
                        f"task '{prep.task.name}' is scored by cross-validation over its rows, so every row is a test row "
                        "of some fold and a search would choose with the rows its figure is scored on; treum tune "
                        "searches on the bars before a walk-forward's test segment (panel tasks)")
                features_cfg = to_dict(cfg.features)
                split, panel, frame, folds = build_search(prep, hpo, plugins, features_cfg)
                env = worker_env()
                searched_features = any(d.root == "features" for d in dims)
                ctx = TrialContext(spec.name, model_values, prep.task.config_dict(), features_cfg, frame,
                                   panel if (searched_features or prep.labels_as_of is not None) else None, folds,
                                   "sequential" in spec.capabilities, prep.labels_as_of is not None,
                                   prep.task.spec.primary_metric, prep.task.spec.higher_is_better, hpo.resources.cpu,
                                   prep.eval_cfg.seed, env)
                started_ray = start_ray(settings, env)
                import ray

                resources, where = trial_resources(hpo, ray.cluster_resources())
                console.print(f"search [bold]{hpo_name}[/] for [bold]{spec.name}[/] on {prep.data_name}: "
                              f"{hpo.num_samples} trials, {hpo.searcher.name} + {hpo.scheduler.name}, "
                              f"{len(folds)} validation blocks of {split.block_bars} bars; {where}")
                console.print(f"  {split.describe()}")
                mode = "max" if ctx.higher_is_better else "min"
                seed = hpo.searcher.seed if hpo.searcher.seed is not None else prep.eval_cfg.seed
                start = _defaults_point(dims, model_values, features_cfg) if hpo.searcher.start_from_defaults else None
                if hpo.searcher.start_from_defaults and start is None:
                    console.print("  the YAML's values lie outside the space: the search does not start from them")
                points = [start] if start else None
                if hpo.searcher.name == "optuna":
                    from ray.tune.search.optuna import OptunaSearch

                    searcher = OptunaSearch(seed=seed, points_to_evaluate=points)
                else:
                    from ray.tune.search.basic_variant import BasicVariantGenerator

                    searcher = BasicVariantGenerator(points_to_evaluate=points, random_state=seed)
                scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=len(folds),
                                           grace_period=min(hpo.scheduler.grace_period, len(folds)),
                                           reduction_factor=hpo.scheduler.reduction_factor)
                             if hpo.scheduler.name == "asha" else FIFOScheduler())
                import logging

                import optuna

                optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study created
                # the registry keeps the results, so Tune's own result files are not written and not looked for
                logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C reaches us: we cancel the rows ourselves
                os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the registry keeps the results
                os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
                with progress_bar() as progress:
                    bar = progress.add_task("trials", total=hpo.num_samples)
                    rows = TrialRows(batch, str(search_job.id), ctx, base, data_cfg, resources, progress, bar,
                                     console, hpo.num_samples)
                    tuner = tune.Tuner(
                        tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources),
                        param_space={d.key: _domain(d) for d in dims},
                        tune_config=tune.TuneConfig(metric=OBJECTIVE, mode=mode, num_samples=hpo.num_samples,
                                                    search_alg=searcher, scheduler=scheduler,
                                                    max_concurrent_trials=hpo.max_concurrent,
                                                    time_budget_s=hpo.time_budget_s,
                                                    reuse_actors=True,  # one worker process per slot: imports once
                                                    trial_dirname_creator=lambda t: f"trial-{t.trial_id}"),
                        run_config=tune.RunConfig(name="search", storage_path=str((run_dir / "tune").resolve()),
                                                  verbose=0, callbacks=[rows], stop=CancelledRows(rows),
                                                  failure_config=tune.FailureConfig(max_failures=0)),
                    )
                    fit_started = time.perf_counter()
                    try:
                        tuner.fit()
                    except KeyboardInterrupt:
                        records = list(rows.records.values())
                        ended = _end_running(records, "cancelled", "the search was interrupted (Ctrl-C)",
                                             ctx.metric)
                        console.print(f"\ninterrupted: {ended} running trial(s) cancelled; nothing registered")
                        raise
                    except BaseException as exc:  # Tune, Ray or a callback failed: no trial row stays running
                        _end_running(list(rows.records.values()), "failed" if isinstance(exc, Exception) else "cancelled",
                                     f"the search ended with {type(exc).__name__}: {exc}", ctx.metric)
                        raise
                records = list(rows.records.values())
                if search_job.status == "cancelled" or rows.search_cancelled:
                    _end_running(records, "cancelled", "its search was cancelled", ctx.metric)
                    raise SearchCancelled(f"search {search_job.id} was cancelled; nothing registered")
                _end_running(records, "cancelled", "the search's time budget ran out" if hpo.time_budget_s else
                             "the search ended before the trial did", ctx.metric)
                out = _choose(records, ctx, str(search_job.id), start is not None)
                _write_trials(records, ctx.metric, run_dir / "trials.csv")
                _print_trials(console, out, ctx.metric, mode)
                if out.best is None:
                    first = next((r.error for r in records if r.error), "no trial reported a score")
                    raise TreumError(f"no trial of the search completed its {len(folds)} validation blocks; first error: {first}")
                if started_ray:
                    ray.shutdown()
                    started_ray = False
                summary = _search_summary(out, hpo_name, hpo, split, ctx, len(folds))
                summary["search_seconds"] = round(time.perf_counter() - fit_started, 1)
                out.final = _train_best(cfg, plugins, overrides, run_dir, out, summary)
                search_job.set_metrics({**summary, "registered": out.final.registered})
                return out
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        registry.close()


class SearchCancelled(TreumError):
    """Someone cancelled the search's row while it ran."""


def _defaults_point(dims: list[Dimension], model_values: dict, features: dict) -> dict[str, Any] | None:
    point = {}
    for d in dims:
        value = (model_values if d.root == "model" else features).get(d.leaf)
        if not contains(d, value):
            return None
        point[d.key] = value
    return point


def _end_running(records: list[TrialRecord], status: str, reason: str, metric: str) -> int:
    """End the rows of trials still running (interrupted, out of time); how many were ended."""
    n = 0
    for rec in records:
        if rec.status == "running":
            rec.status = status
            n += rec.job.finish(status, metrics=_summary(rec, metric) if rec.last else None, reason=reason)
    return n


def _choose(records: list[TrialRecord], ctx: TrialContext, search_id: str, from_yaml: bool) -> SearchOutcome:
    """The best trial among those that ran every block (a trial ASHA stopped is scored on fewer rows)."""
    full = [r for r in records if r.status == "completed" and r.last.get("value") is not None]
    sign = 1 if ctx.higher_is_better else -1
    best = max(full, key=lambda r: sign * r.last["value"]) if full else None
    untuned = next((r for r in records if from_yaml and r.params == records[0].params and r.number == 1), None)
    return SearchOutcome(search_id, records, best, untuned)


def _search_summary(out: SearchOutcome, hpo_name: str, hpo: HpoConfig, split: SearchSplit, ctx: TrialContext,
                    blocks: int) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in out.trials) for s in ("completed", "stopped_early", "failed", "cancelled")}
    best = out.best
    assert best is not None
    return {
        "search_job": out.search_id, "hpo": hpo_name, "trials": len(out.trials), **{f"trials_{k}": v for k, v in counts.items()},
        "best_trial": best.trial_id, "best_trial_job": str(best.job.id), "best_params": best.params,
        "objective": ctx.metric, "validation_score": best.last.get("value"),
        "validation": split.describe(), "validation_blocks": blocks,
        "searcher": hpo.searcher.name, "scheduler": hpo.scheduler.name,
        # the first trial ran the model's own YAML values (searcher.start_from_defaults): the untuned figure
        "untuned_validation_score": out.untuned.last.get("value") if out.untuned is not None else None,
    }


def _train_best(cfg: DictConfig, plugins: Any, overrides: list[str], run_dir: Path, out: SearchOutcome,
                summary: dict[str, Any]) -> Any:
    """The best values evaluated once on the test segment beside the baselines, and registered (as treum train)."""
    from treum.commands.compose import compose_run
    from treum.commands.output import console
    from treum.commands.run import run_models

    assert out.best is not None
    chosen = [as_override(k, v) for k, v in out.best.params.items()]
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0] not in out.best.params]
    final_cfg = compose_run([*kept, *chosen], plugins)
    console.print(f"\nbest trial {out.best.number} ({out.best.trial_id}): {' '.join(chosen)}; now on the test segment, "
                  "beside the baselines (the search never read it)")
    register = final_cfg.registry.get("register") is not False
    return run_models(final_cfg, plugins, [str(final_cfg.model.name)], [*kept, *chosen], "tune", register,
                      run_dir / "best", metadata={"tuning": summary}, job_extra={"search": out.search_id})


def _write_trials(records: list[TrialRecord], metric: str, path: Path) -> None:
    rows = [{"trial": r.number, "id": r.trial_id, "job": str(r.job.id), "status": r.status,
             metric: r.last.get("value"), "blocks": r.last.get("block", 0), "node": r.first.get("node"),
             "device": r.first.get("device"), **r.params, "error": r.error} for r in records]
    pd.DataFrame(rows).to_csv(path, index=False)


def _print_trials(console, out: SearchOutcome, metric: str, mode: str) -> None:
    from rich.table import Table

    sign = -1 if mode == "max" else 1
    def rank(r: TrialRecord) -> tuple[bool, float]:
        value = r.last.get("value")
        return r.status != "completed", np.inf if value is None else sign * value

    ranked = sorted(out.trials, key=rank)
    keys = list(out.trials[0].params) if out.trials else []
    table = Table(title=f"trials ({metric} on the validation blocks; the test segment is not used)")
    for col in ["trial", "status", metric, "blocks", *keys]:
        table.add_column(col)
    for r in ranked[:15]:
        table.add_row(str(r.number), r.status, _short(r.last.get("value")), str(r.last.get("block", 0)),
                      *[_short(r.params.get(k)) for k in keys])
    console.print(table)


def run(cfg: DictConfig, overrides: list[str], run_dir: Path, adopt: str | None = None) -> int:
    """One ``treum tune`` run (a Hydra job)."""
    from treum.commands.compose import compose_run
    from treum.commands.output import console, print_run
    from treum.core.plugins import create_plugin_registry

    plugins = create_plugin_registry()
    cfg = compose_run(overrides, plugins)
    cfg, hpo_name, hpo = load_hpo(cfg, plugins, overrides)
    started = time.perf_counter()
    try:
        out = search(cfg, plugins, overrides, run_dir, hpo_name, hpo, adopt)
    except KeyboardInterrupt:
        return 130
    print_run(out.final)
    console.print(f"search {out.search_id}: {len(out.trials)} trials in {time.perf_counter() - started:.1f}s; "
                  f"trials in {run_dir / 'trials.csv'}")
    return 1 if out.final.failures else 0


def main(argv: Sequence[str]) -> int:
    return run_app("tune", argv, lambda cfg, overrides, run_dir: run(cfg, overrides, run_dir))
