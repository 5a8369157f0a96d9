"""The stages of a run: prepare the data for a task, evaluate models beside its baselines, register.

``run_models`` strings them together for ``treum train``, ``evaluate`` and
``leaderboard`` (and the demo). Each stage is a function of its own:

- ``prepare``: load and validate the data set, features, the task's labels;
- ``evaluate`` / ``evaluate_baselines``: the walk-forward, out of sample, scored by the task;
- ``leaderboard_frame``: one row per model and baseline, with the task's comparisons
  and the rows each one left empty;
- ``register_model``: the final fit on everything labelled up to the end of the test
  segment, saved and registered with its walk-forward figures.

Each model's work happens inside a registry job (``Registry.job_batch``): queued
before any work, running, then completed, failed or cancelled; nobody sets a
job's state by hand.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from treum.commands.compose import model_config, to_dict, validate_run_config
from treum.commands.output import console, new_run_dir, progress_bar, write_table
from treum.core.config import build_config, config_dict
from treum.core.data import Segments, data_version
from treum.core.errors import TreumError
from treum.core.evaluation import (
    EvaluationResult,
    cross_validate,
    LabelsAsOf,
    WalkForwardConfig,
    final_fold,
    fit_rows,
    make_folds,
    walk_forward,
)
from treum.core.model import OOS_FILE, Model, build_model
from treum.core.plugins import PluginRegistry
from treum.core.task import Task, build_task
from treum.registry.store import Registry




@dataclass
class Prepared:
    """A data set made ready for one task: raw columns, ``f_*`` features and the task's ``target*`` labels."""

    panel: pd.DataFrame
    frame: pd.DataFrame
    segments: Segments
    task: Task
    eval_cfg: WalkForwardConfig
    purge: int
    version: str
    data_name: str
    features: str
    row_folds: list | None = None  # a corpus task's cross-validation folds (``Task.row_folds``), else None
    data_config: dict = field(default_factory=dict)  # the data set's config (a simulator's size), kept with a version
    features_config: dict = field(default_factory=dict)  # the feature set's config, kept with a version

    @property
    def label_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith("target")]

    @property
    def labels_as_of(self) -> LabelsAsOf | None:
        """Labels as known at a date, for tasks whose labels are decided after the fact."""
        if self.row_folds is not None or self.task.label_horizon() is not None:
            return None
        return lambda end: self.task.labels_as_of(self.panel, end)


def prepare(cfg: DictConfig, plugins: PluginRegistry) -> Prepared:
    """Load, validate, featurise and label the configured data set for the configured task."""
    validate_run_config(cfg, plugins)  # task, eval, registry and the purge against the labels' horizon
    data_cfg = to_dict(cfg.data)
    eval_cfg = build_config(WalkForwardConfig, to_dict(cfg.eval), "eval")
    task = build_task(plugins.task(cfg.task.name), to_dict(cfg.task))
    data_spec = plugins.dataset(data_cfg["name"])
    check_data_kind(plugins, task.name, data_spec)
    if data_spec.kind == "corpus":
        return _prepare_corpus(cfg, data_spec, data_cfg, task, eval_cfg)
    segments = Segments.from_config(data_cfg.get("segments") or {})
    panel = data_spec.load(data_cfg)
    segments.check_against(panel, f"data '{data_cfg['name']}'")
    features = plugins.feature_set(cfg.features.name).compute(panel, to_dict(cfg.features))
    targets = task.make_targets(panel)
    stray = [c for c in targets.columns if not str(c).startswith("target")]
    if stray:
        raise TreumError(f"task '{task.name}' made label columns {stray}; label columns must start with 'target'")
    frame = panel.join(features).join(targets)
    horizon = task.label_horizon()
    purge = eval_cfg.purge if eval_cfg.purge is not None else (horizon or 0)
    return Prepared(panel, frame, segments, task, eval_cfg, purge, data_version(panel), data_cfg["name"],
                    str(cfg.features.name), data_config=data_cfg, features_config=to_dict(cfg.features))


def check_data_kind(plugins: PluginRegistry, task: str, data_spec: Any) -> None:
    """A corpus task reads labelled text and a panel task bars: say which data sets fit when they do not."""
    wanted = plugins.task(task).data_kind
    if data_spec.kind == wanted:
        return
    fitting = sorted(n for n, d in plugins.specs("datasets").items() if d.kind == wanted)
    what = {"corpus": "labelled text (a corpus)", "panel": "bars in time (a panel)"}
    raise TreumError(f"task '{task}' reads {what[wanted]}, but data '{data_spec.name}' is {what[data_spec.kind]}; "
                     f"choose one of: {', '.join(fitting) or 'none installed'}")


def _prepare_corpus(cfg: DictConfig, data_spec: Any, data_cfg: dict, task: Task, eval_cfg: WalkForwardConfig) -> Prepared:
    """A corpus for a task scored over rows without time order: texts, labels and the task's folds."""
    from treum.core.corpus import corpus_inputs

    corpus = data_spec.load(data_cfg)
    frame = corpus_inputs(corpus).join(task.make_targets(corpus))  # the person's label only as the task's target
    try:
        folds = task.row_folds(frame, eval_cfg.seed)
    except ValueError as exc:
        raise TreumError(f"task '{task.name}' on data '{data_spec.name}': {exc}") from None
    if folds is None:
        raise TreumError(f"task '{task.name}' reads a corpus but defines no row_folds (see treum.core.task.Task)")
    return Prepared(corpus, frame, None, task, eval_cfg, 0, data_version(corpus), data_spec.name,  # type: ignore[arg-type]
                    "none", row_folds=folds, data_config=data_cfg)


def describe_split(prep: Prepared) -> str:
    """The run line's account of how the models are scored."""
    if prep.row_folds is not None:
        return f"{prep.task.evaluation_note() or f'{len(prep.row_folds)}-fold cross-validation'}, seed {prep.eval_cfg.seed}"
    return (f"test {prep.segments.test[0].date()}..{prep.segments.test[1].date()}, "
            f"refit every {prep.eval_cfg.refit_every} bars, purge {prep.purge}, embargo {prep.eval_cfg.embargo}"
            + ("; labels recomputed per fold (decided after the fact)" if prep.labels_as_of else ""))


def evaluate(label: str, spec: Any, config: Any, prep: Prepared, progress: Progress | None = None) -> EvaluationResult:
    """Walk one model forward over the test segment (or cross-validate it over a corpus) and score it with the task."""
    if prep.row_folds is not None:
        bar = progress.add_task(label, total=len(prep.row_folds)) if progress else None
        result = cross_validate(label, lambda: build_model(spec, config, prep.task), prep.frame, prep.row_folds,
                                on_fold=(lambda done, total: progress.update(bar, completed=done)) if progress else None)
    else:
        folds = make_folds(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
        bar = progress.add_task(label, total=len(folds)) if progress else None
        result = walk_forward(
            label,
            lambda: build_model(spec, config, prep.task),
            prep.frame,
            folds,
            sequential="sequential" in spec.capabilities,
            on_fold=(lambda done, total: progress.update(bar, completed=done)) if progress else None,
            labels_as_of=prep.labels_as_of,
        )
    missing = [c for c in prep.task.prediction_columns() if c not in result.predictions.columns]
    if missing:
        raise TreumError(
            f"model '{spec.name}' returned no {missing} columns; task '{prep.task.name}' predicts "
            f"{list(prep.task.prediction_columns())} (see docs/plugins.md)"
        )
    oos = result.predictions.join(prep.frame[prep.label_columns])
    result.metrics = prep.task.score(oos, prep.eval_cfg.bootstrap, prep.eval_cfg.seed)
    cols = list(prep.task.prediction_columns())
    result.metrics["empty"] = float(oos[cols].isna().any(axis=1).sum())
    result.metrics["fit_seconds"] = round(result.fit_seconds, 2)
    result.predictions = oos
    return result


def evaluate_baselines(prep: Prepared, plugins: PluginRegistry, overrides: list[str],
                       progress: Progress | None) -> dict[str, EvaluationResult]:
    """Every baseline of the task, on the same split; a failing baseline stops the run (nothing to compare with)."""
    out = {}
    for baseline in plugins.task(prep.task.name).baselines:
        spec = plugins.model(baseline.model)
        config = model_config(plugins, baseline.model, overrides, dict(baseline.overrides))
        try:
            out[baseline.label] = evaluate(baseline.label, spec, config, prep, progress)
        except Exception as exc:
            raise TreumError(f"baseline '{baseline.label}' ({baseline.model}) failed: {type(exc).__name__}: {exc}") from exc
    return out


def leaderboard_frame(prep: Prepared, models: dict[str, EvaluationResult],
                      baselines: dict[str, EvaluationResult], reference: str | None) -> pd.DataFrame:
    """One row per model and baseline with the task's metrics and comparisons, best first."""
    ref = baselines[reference].predictions if reference in baselines else None
    rows = []
    for kind, results in (("model", models), ("baseline", baselines)):
        for label, res in results.items():
            row = {"model": label, "kind": kind, **res.metrics}
            if ref is not None and label != reference:
                row.update(prep.task.compare(res.predictions, ref))
            rows.append(row)
    table = pd.DataFrame(rows)
    most = table["n"].max() if "n" in table else None
    table["fewer_rows"] = (table["n"] < most) if most is not None else False
    key = prep.task.spec.primary_metric
    return table.sort_values(key, ascending=not prep.task.spec.higher_is_better).reset_index(drop=True)


def register_model(registry: Registry, spec: Any, config: Any, prep: Prepared, metrics: dict, validated: bool,
                   baseline_metrics: dict, job_id: Any, run_dir: Path, actor: str, extra: dict | None = None,
                   oos: pd.DataFrame | None = None) -> Any:
    """Fit on everything labelled up to the end of the test segment (every text of a corpus), save, register.

    ``oos``, the walk-forward's out-of-sample predictions with their labels, is kept inside the artifact
    (``evaluation/oos.parquet``, under the manifest's hashes): the release report measures conformal
    coverage and fairness on these rows, which no fit of the version saw.
    """
    if prep.row_folds is not None:
        rows = prep.task.final_rows(prep.frame, prep.eval_cfg.seed)
        train, valid = prep.frame.iloc[rows.train], prep.frame.iloc[rows.valid] if rows.valid is not None else None
        where = {"corpus": {"texts": len(prep.frame), "final_fit_texts": len(train),
                            "valid_texts": 0 if valid is None else len(valid)}}
        evaluation_end, period = None, "cross_validation"
    else:
        fold = final_fold(prep.frame.index.get_level_values("timestamp"), prep.segments, prep.eval_cfg, prep.purge)
        train, valid = fit_rows(prep.frame, fold, prep.labels_as_of)
        where = {
            "entities": sorted(map(str, prep.frame.index.get_level_values("entity").unique())),
            "segments": {k: [str(d.date()) for d in v] for k, v in prep.segments.__dict__.items() if v},
            "final_fit": {"train": [str(fold.train[0].date()), str(fold.train[1].date())]},
        }
        evaluation_end, period = prep.segments.test[1].date(), "walk_forward"
    started = datetime.now()
    model = build_model(spec, config, prep.task).fit(train, valid)
    with tempfile.TemporaryDirectory() as tmp:
        if oos is not None:
            keep = [c for c in oos.columns if c in prep.task.prediction_columns() or c == "fold" or str(c).startswith("target")]
            (Path(tmp) / "model" / OOS_FILE).parent.mkdir(parents=True)
            oos[keep].to_parquet(Path(tmp) / "model" / OOS_FILE)
        model.save(Path(tmp) / "model")
        return registry.register(
            name=spec.name,
            task=spec.task,
            family=spec.family,
            config=config_dict(config),
            artifact_dir=Path(tmp) / "model",
            metrics=metrics,
            baselines=baseline_metrics,
            validated=validated,
            data_version=prep.version,
            performance=prep.task.performance_row(metrics),
            metadata={
                "data": prep.data_name,
                # what loads the same data again (a simulator's size and seed; bounds): the release report does
                "data_config": {k: v for k, v in prep.data_config.items() if k not in ("name", "segments", "path")},
                **where,
                "features": prep.features,
                "features_config": {k: v for k, v in prep.features_config.items() if k != "name"},
                "task_config": prep.task.config_dict(),
                "capabilities": sorted(spec.capabilities),
                "evaluation": prep.task.scheme(),  # how the out-of-sample figures were made
                "run_dir": str(run_dir),
                **(extra or {}),  # e.g. the search a tuned version came from
            },
            job_id=job_id,
            started_at=started,
            evaluation_end=evaluation_end,
            evaluation_period=period,
            actor=actor,
        )


@dataclass
class RunOutcome:
    run_dir: Path
    task: Task | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    registered: list[dict] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    failures: dict[str, BaseException] = field(default_factory=dict)
    caveat: str = ""  # the data set's, printed beside its leaderboard
    scheme: str | None = None  # how the figures were made, when not the task's own scheme
    metadata: dict = field(default_factory=dict)  # added to every registered version's metadata


def open_registry(cfg: DictConfig) -> Registry:
    return Registry(url=cfg.registry.get("url"))


def run_models(cfg: DictConfig, plugins: PluginRegistry, names: list[str], overrides: list[str], command: str,
               register: bool, run_dir: Path | None = None, metadata: dict | None = None,
               adopt: dict[str, str] | None = None, job_type: str | None = None,
               job_extra: dict | None = None) -> RunOutcome:
    """Evaluate ``names`` beside the task's baselines on one split, then fit and register each (if ``register``).

    Every model gets a job before any work; a model that fails marks its job failed and
    registers nothing; jobs that never started (the data or a baseline failed) end cancelled.
    ``adopt`` maps a name to a queued job created before the run (``POST /training/jobs``);
    ``metadata`` is added to each registered version's (a tuned version names its search), ``job_extra``
    to each job's training config.
    """
    registry = open_registry(cfg)
    actor = str(cfg.get("actor") or "cli")
    label = cfg.task.name if command == "leaderboard" else names[0]
    run_dir = run_dir or new_run_dir(command, f"{label}-{cfg.data.name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    outcome = RunOutcome(run_dir, metadata=dict(metadata or {}))
    configs = {name: model_config(plugins, name, overrides, own=command != "leaderboard") for name in names}
    adopt = adopt or {}
    try:
        with registry.job_batch(actor) as batch:
            jobs = {
                name: batch.adopt(adopt[name]) if name in adopt else batch.create(
                    f"{command}:{name}:{cfg.data.name}",
                    job_type or ("training" if register else "evaluation"),
                    {"name": name, **config_dict(configs[name])},
                    {"eval": to_dict(cfg.eval), "task": to_dict(cfg.task), "features": to_dict(cfg.features),
                     **(job_extra or {})},
                    to_dict(cfg.data),
                )
                for name in names
            }
            outcome.job_ids = [str(j.id) for j in jobs.values()]
            prep = prepare(cfg, plugins)
            outcome.task = prep.task
            outcome.caveat = plugins.dataset(prep.data_name).caveat
            console.print(
                f"data [bold]{prep.data_name}[/] ({len(prep.frame):,} rows, version {prep.version}); task "
                f"[bold]{prep.task.name}[/]; {describe_split(prep)}"
            )
            _evaluate_and_register(cfg, plugins, names, configs, jobs, prep, overrides, register, registry, actor, outcome)
    finally:
        registry.close()
    if outcome.failures and len(outcome.failures) == len(names):
        first = next(iter(outcome.failures.values()))
        raise first if isinstance(first, TreumError) else TreumError(f"every model failed; first error: {first!r}")
    return outcome


def _evaluate_and_register(cfg, plugins, names, configs, jobs, prep, overrides, register, registry, actor, outcome):
    """Per model, inside its job: walk forward, compare with the reference baseline, then (if asked) register."""
    results: dict[str, EvaluationResult] = {}
    reference = plugins.task(prep.task.name).reference
    with progress_bar() as progress:
        baselines = evaluate_baselines(prep, plugins, overrides, progress)
        baseline_metrics = {k: v.metrics for k, v in baselines.items()}
        for name in names:
            spec = plugins.model(name)
            try:
                with jobs[name].running():
                    res = evaluate(name, spec, configs[name], prep, progress)
                    if reference in baselines:
                        res.metrics.update(prep.task.compare(res.predictions, baselines[reference].predictions))
                    results[name] = res
                    jobs[name].set_metrics(res.metrics)
                    write_run_files(res, prep, outcome.run_dir / name)
                    if register and jobs[name].status == "cancelled":  # cancelled while it ran: register nothing
                        raise TreumError(f"job {jobs[name].id} was cancelled while it ran; {name} is not registered")
                    if register:
                        validated = prep.task.beats(res.metrics, list(baseline_metrics.values()))
                        entry = register_model(registry, spec, configs[name], prep, res.metrics, validated,
                                               baseline_metrics, jobs[name].id, outcome.run_dir, actor,
                                               outcome.metadata, oos=res.predictions)
                        outcome.registered.append({"name": name, "version": entry.model_version, "id": str(entry.id),
                                                   "status": entry.deployment_status, "sha256": entry.artifact_sha256})
            except Exception as exc:
                outcome.failures[name] = exc
                results.pop(name, None)
                console.print(f"[red]{name} failed:[/] {type(exc).__name__}: {exc}")
    outcome.table = leaderboard_frame(prep, results, baselines, reference)
    write_table(outcome.table, outcome.run_dir, "leaderboard", outcome.caveat)
    for label, res in {**results, **baselines}.items():
        res.predictions.to_csv(outcome.run_dir / f"predictions-{label}.csv")


def write_run_files(res: EvaluationResult, prep: Prepared, directory: Path) -> list[Path]:
    """The last fold's model writes its files for a person to read (``Model.run_files``), if it has any."""
    from treum.core.data import slice_time
    from treum.core.evaluation import without_labels

    model = res.last_model
    if model is None or not res.folds or type(model).run_files is Model.run_files:
        return []
    fold = res.folds[-1]
    last = res.predictions[res.predictions["fold"] == fold.index]
    if prep.row_folds is not None:
        seen = without_labels(prep.frame.iloc[fold.test])
    else:
        seen = without_labels(slice_time(prep.frame, end=fold.test[1]))
    directory.mkdir(parents=True, exist_ok=True)
    files = list(model.run_files(directory, seen, last) or [])
    if not files:
        directory.rmdir()
    for f in files:
        console.print(f"{res.name}: wrote {f}")
    return files


def apply_version(cfg: DictConfig, plugins: PluginRegistry, run_dir: Path) -> RunOutcome:
    """A registered version applied as it is to another labelled corpus (cross-domain), beside always-positive.

    Nothing is refit: the version's answers on every text of ``data=`` are scored by its task,
    next to a fixed rule that needs no training (P(positive) = 1). The figures go into an
    evaluation job of the registry and the run folder; nothing is registered.
    """
    from treum.core.corpus import corpus_inputs
    from treum.core.errors import ConfigError
    from treum.core.evaluation import without_labels
    from treum.serve.live import load_version, task_of

    name, wanted = str(cfg.model.name), str(cfg.version)
    data_cfg = to_dict(cfg.data)
    data_spec = plugins.dataset(data_cfg["name"])
    if data_spec.kind != "corpus":
        raise ConfigError(f"version= applies a trained version to another labelled corpus; data '{data_spec.name}' is "
                          "a panel, where a model is judged by its own walk-forward (`treum evaluate model=NAME`)")
    check_data_kind(plugins, plugins.model(name).task, data_spec)
    registry = open_registry(cfg)
    outcome = RunOutcome(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        row = registry.get(name, None if wanted == "latest" else wanted)
        task = task_of(plugins, row.model_type, row.model_metadata)
        corpus = data_spec.load(data_cfg)
        if row.training_data_version == data_version(corpus):
            raise ConfigError(
                f"{name} v{row.model_version} was fitted on this very data (version {row.training_data_version}): its answers "
                "here are in-sample; its cross-validation figures are in `treum registry show "
                f"{name}`, and version= is for other labelled text")
        with registry.job_batch(str(cfg.get("actor") or "cli")) as batch:
            job = batch.create(f"evaluate:{name}@v{row.model_version}:{data_spec.name}", "evaluation",
                               {"name": name, "version": row.model_version, **(row.model_config or {})},
                               {"applied": True, "task": task.config_dict()}, data_cfg)
            outcome.job_ids = [str(job.id)]
            with job.running():
                model = load_version(registry, plugins, row.artifact_sha256, task)
                frame = corpus_inputs(corpus).join(task.make_targets(corpus))
                label_cols = [c for c in frame.columns if str(c).startswith("target")]
                ours = model.predict(without_labels(frame)).join(frame[label_cols])
                rule, fixed = task.fixed_rule(frame)
                fixed = fixed.join(frame[label_cols])
                seed, n_boot = int(cfg.eval.get("seed", 0)), int(cfg.eval.get("bootstrap", 500))
                rows = []
                for label, kind, oos in ((f"{name} v{row.model_version}", "model", ours), (rule, "baseline", fixed)):
                    rows.append({"model": label, "kind": kind, **task.score(oos, n_boot, seed), "empty": 0.0,
                                 "fit_seconds": 0.0})
                    oos.to_csv(run_dir / f"predictions-{label.replace(' ', '-')}.csv")
                job.set_metrics(rows[0])
    finally:
        registry.close()
    table = pd.DataFrame(rows)
    table["fewer_rows"] = False
    outcome.task, outcome.table = task, table
    outcome.scheme = "a registered version applied unchanged to every text, no refit"
    outcome.caveat = (f"{name} v{row.model_version} was trained on '{(row.model_metadata or {}).get('data')}' and is "
                      f"applied unchanged to '{data_spec.name}' (cross-domain). {data_spec.caveat}").strip()
    write_table(table, run_dir, "leaderboard", outcome.caveat)
    return outcome


def models_of_task(plugins: PluginRegistry, task: str, demo: bool = False) -> list[str]:
    """The enabled models (not baselines) of a task; for ``demo``, without ablations and models too costly for it."""
    return [n for n, s in plugins.specs("models").items()
            if s.task == task and not s.baseline and (not demo or (s.ablation_of is None and s.demo))]
