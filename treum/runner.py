"""Runs: load and validate data, build features and targets, walk forward, score, register.

This is the layer between the command line and the core: it may use the
registry, the core and the plugin registry, and nothing imports it but the CLI.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from treum.core.config import build_config
from treum.core.data import Segments, data_version
from treum.core.errors import ConfigError, TreumError
from treum.core.evaluation import (
    EvaluationResult,
    WalkForwardConfig,
    final_fold,
    make_folds,
    rows_in,
    walk_forward,
)
from treum.core.plugins import PluginRegistry
from treum.core.tasks import REFERENCE_BASELINE, Task, get_task
from treum.registry.store import Registry, treum_home

console = Console(width=None if sys.stdout.isatty() else 180, soft_wrap=True)


def to_dict(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


@dataclass
class Prepared:
    """A data set made ready for one task: raw columns, ``f_*`` features and ``target*`` columns."""

    frame: pd.DataFrame
    segments: Segments
    task: Task
    task_cfg: dict
    eval_cfg: WalkForwardConfig
    purge: int
    version: str
    data_name: str

    @property
    def target_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith("target") or c == "fwd_return"]


def prepare(cfg: DictConfig, plugins: PluginRegistry) -> Prepared:
    """Load, validate, featurise and label the configured data set for the configured task."""
    data_cfg = to_dict(cfg.data)
    segments = Segments.from_config(data_cfg.get("segments") or {})
    eval_cfg = WalkForwardConfig(**to_dict(cfg.eval))
    problem = eval_cfg.validate()
    if problem:
        raise ConfigError(problem)
    task = get_task(cfg.task.name)
    task_cfg = to_dict(cfg.task)
    panel = plugins.dataset(data_cfg["name"]).load(data_cfg)
    segments.check_against(panel, f"data '{data_cfg['name']}'")
    features = plugins.feature_set(cfg.features.name).compute(panel, to_dict(cfg.features))
    targets = task.make_targets(panel, task_cfg)
    frame = panel.join(features).join(targets)
    purge = eval_cfg.purge if eval_cfg.purge is not None else task.max_horizon(task_cfg)
    return Prepared(frame, segments, task, task_cfg, eval_cfg, purge, data_version(panel), data_cfg["name"])


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("folds"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def evaluate(label: str, spec: Any, config: Any, prep: Prepared, progress: Progress | None = None) -> EvaluationResult:
    """Walk one model forward over the test segment and score it."""
    folds = make_folds(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
    bar = progress.add_task(label, total=len(folds)) if progress else None
    result = walk_forward(
        label,
        lambda: spec.factory(config),
        prep.frame,
        folds,
        sequential="sequential" in spec.capabilities,
        on_fold=(lambda done, total: progress.update(bar, completed=done)) if progress else None,
    )
    oos = result.predictions.join(prep.frame[prep.target_columns])
    result.metrics = prep.task.score(oos, prep.task_cfg, prep.eval_cfg.bootstrap, prep.eval_cfg.seed)
    result.metrics["fit_seconds"] = round(result.fit_seconds, 2)
    result.predictions = oos
    return result


def model_config(plugins: PluginRegistry, name: str, base_overrides: list[str], extra: dict | None = None) -> Any:
    """The validated config of a model from its YAML (plus fixed overrides for a baseline)."""
    from treum.configuration import compose_plain

    keep = [o for o in base_overrides if not o.startswith(("model=", "model."))]
    cfg = compose_plain(keep + [f"model={name}"], plugins)
    values = {**to_dict(cfg.model), **(extra or {})}
    return build_config(plugins.model(name), values)


def run_baselines(prep: Prepared, plugins: PluginRegistry, overrides: list[str], progress: Progress) -> dict[str, EvaluationResult]:
    out = {}
    for label, name, extra in prep.task.baselines:
        spec = plugins.model(name)
        out[label] = evaluate(label, spec, model_config(plugins, name, overrides, extra), prep, progress)
    return out


def leaderboard_frame(prep: Prepared, models: dict[str, EvaluationResult], baselines: dict[str, EvaluationResult]) -> pd.DataFrame:
    """One row per model and baseline, the task's headline metrics as columns, best first."""
    ref_name = REFERENCE_BASELINE.get(prep.task.name)
    reference = baselines.get(ref_name).predictions if ref_name in baselines else None
    rows = []
    for kind, results in (("model", models), ("baseline", baselines)):
        for label, res in results.items():
            row = {"model": label, "kind": kind, **res.metrics}
            if reference is not None and label != ref_name:
                row.update(prep.task.compare(res.predictions, reference, prep.task_cfg))
            rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(prep.task.primary_metric, ascending=not prep.task.higher_is_better).reset_index(drop=True)


HEADLINE = {
    "direction": ["accuracy", "balanced_accuracy", "auc", "ic", "n"],
    "volatility": ["qlike_h1", "mse_h1", "qlike_h21", "mse_h21", "vol_error_pct_h21", "dm_stat_h1", "dm_pvalue_h1"],
    "regime": ["balanced_accuracy", "bear_f1", "accuracy", "detection_lag_bars", "bears_missed", "bear_markets"],
}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1000 or (v == int(v) and abs(v) >= 10) else f"{v:.4f}"
    return str(v)


def headline(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """The task's headline columns as text, a metric and its 95% CI in one cell where there is one."""
    out = pd.DataFrame({"model": table["model"], "kind": table["kind"]})
    for col in HEADLINE[task]:
        if col not in table.columns:
            continue
        lo, hi = f"{col}_ci_low", f"{col}_ci_high"
        if lo in table.columns and table[lo].notna().any():
            out[f"{col} [95% CI]"] = [
                f"{_fmt(v)} [{_fmt(a)}, {_fmt(b)}]" if np.isfinite(a) else _fmt(v)
                for v, a, b in zip(table[col], table[lo], table[hi])
            ]
        else:
            out[col] = [_fmt(v) for v in table[col]]
    out["fit s"] = [_fmt(v) for v in table["fit_seconds"]]
    return out


def print_table(title: str, table: pd.DataFrame) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in table.columns:
        t.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for _, row in table.iterrows():
        t.add_row(*[_fmt(v) for v in row])
    console.print(t)


def new_run_dir(command: str, label: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = treum_home() / "runs" / f"{stamp}-{command}-{label}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(table: pd.DataFrame, run_dir: Path, stem: str) -> None:
    table.to_csv(run_dir / f"{stem}.csv", index=False)
    (run_dir / f"{stem}.md").write_text(table.to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else _markdown(table))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def _markdown(table: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "-" if np.isnan(v) else f"{v:.4f}"
        return str(v)

    head = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


@dataclass
class TrainOutcome:
    run_dir: Path
    table: pd.DataFrame
    registered: list[dict] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    failures: dict[str, BaseException] = field(default_factory=dict)


def open_registry(cfg: DictConfig) -> Registry:
    return Registry(url=cfg.registry.get("url"))


def train_models(
    cfg: DictConfig,
    plugins: PluginRegistry,
    names: list[str],
    overrides: list[str],
    command: str,
    register: bool,
) -> TrainOutcome:
    """Evaluate ``names`` and the task's baselines on one split, then fit and register each model.

    Each model gets an ``ml_training_jobs`` row before any work; a failure marks it
    failed with the error and registers nothing for that model.
    """
    registry = open_registry(cfg)
    actor = str(cfg.get("actor") or "cli")
    label = cfg.task.name if command == "leaderboard" else names[0]
    run_dir = new_run_dir(command, f"{label}-{cfg.data.name}")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    jobs: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for name in names:
        configs[name] = model_config(plugins, name, overrides)
        jobs[name] = registry.create_job(
            f"{command}:{name}:{cfg.data.name}",
            "training" if register else "evaluation",
            {"name": name, **json.loads(json.dumps(to_dict(cfg.model) if len(names) == 1 else {}, default=str))},
            {"eval": to_dict(cfg.eval), "task": to_dict(cfg.task), "features": to_dict(cfg.features)},
            to_dict(cfg.data),
            actor,
        )
    outcome = TrainOutcome(run_dir, pd.DataFrame(), job_ids=[str(j) for j in jobs.values()])
    try:
        prep = prepare(cfg, plugins)
    except BaseException as exc:
        for job in jobs.values():
            registry.fail_job(job, exc, actor)
        raise
    console.print(
        f"data [bold]{prep.data_name}[/] ({len(prep.frame):,} rows, version {prep.version}); task "
        f"[bold]{prep.task.name}[/]; test {prep.segments.test[0].date()}..{prep.segments.test[1].date()}, "
        f"refit every {prep.eval_cfg.refit_every} bars, purge {prep.purge}, embargo {prep.eval_cfg.embargo}"
    )
    results: dict[str, EvaluationResult] = {}
    failures = outcome.failures
    with _progress() as progress:
        baselines = run_baselines(prep, plugins, overrides, progress)
        for name in names:
            registry.start_job(jobs[name])
            try:
                results[name] = evaluate(name, plugins.model(name), configs[name], prep, progress)
            except Exception as exc:
                failures[name] = exc
                registry.fail_job(jobs[name], exc, actor)
                console.print(f"[red]{name} failed:[/] {type(exc).__name__}: {exc}")
    table = leaderboard_frame(prep, results, baselines)
    outcome.table = table
    write_table(table, run_dir, "leaderboard")
    for label_, res in {**results, **baselines}.items():
        res.predictions.to_csv(run_dir / f"predictions-{label_}.csv")
    baseline_metrics = {k: v.metrics for k, v in baselines.items()}
    # the registered version's fit: everything labelled up to the end of the test segment, the same for every model
    fold = final_fold(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
    final_train = rows_in(prep.frame, fold.train)
    final_valid = rows_in(prep.frame, fold.valid) if fold.valid else None
    for name in results:
        row = table[table["model"] == name].iloc[0].to_dict()
        metrics = {k: v for k, v in row.items() if k not in ("model", "kind")}
        validated = prep.task.beats(metrics, list(baseline_metrics.values()))
        if not register:
            registry.complete_job(jobs[name], metrics, actor)
            continue
        try:
            spec = plugins.model(name)
            started = datetime.now()
            model = spec.factory(configs[name]).fit(final_train, final_valid)
            with tempfile.TemporaryDirectory() as tmp:
                model.save(Path(tmp) / "model")
                entry = registry.register(
                    name=name,
                    task=spec.task,
                    family=spec.family,
                    config=json.loads(json.dumps(configs[name].__dict__, default=str)),
                    artifact_dir=Path(tmp) / "model",
                    metrics=metrics,
                    baselines=baseline_metrics,
                    validated=validated,
                    data_version=prep.version,
                    metadata={
                        "data": prep.data_name,
                        "entities": sorted(map(str, prep.frame.index.get_level_values("entity").unique())),
                        "features": cfg.features.name,
                        "task_config": prep.task_cfg,
                        "capabilities": sorted(spec.capabilities),
                        "segments": {k: [str(d.date()) for d in v] for k, v in prep.segments.__dict__.items() if v},
                        "final_fit": {"train": [str(fold.train[0].date()), str(fold.train[1].date())]},
                        "run_dir": str(run_dir),
                    },
                    job_id=jobs[name],
                    started_at=started,
                    evaluation_end=prep.segments.test[1].date(),
                    actor=actor,
                )
            outcome.registered.append(
                {"name": name, "version": entry.model_version, "id": str(entry.id), "status": entry.deployment_status,
                 "sha256": entry.artifact_sha256}
            )
        except Exception as exc:
            failures[name] = exc
            registry.fail_job(jobs[name], exc, actor)
            console.print(f"[red]{name} failed while registering:[/] {type(exc).__name__}: {exc}")
    registry.close()
    if failures and not results:
        first = next(iter(failures.values()))
        raise first if isinstance(first, TreumError) else TreumError(f"every model failed; first error: {first!r}")
    return outcome


def models_of_task(plugins: PluginRegistry, task: str) -> list[str]:
    return [n for n, s in plugins.specs("models").items() if s.task == task and not s.baseline]


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.1f}s"
