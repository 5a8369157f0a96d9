"""Explanations of deployed models over HTTP: why a model answers as it does.

- ``POST /explain/shap``, ``/explain/lime``, ``/explain/counterfactual``: one row, given as its
  feature values (``row``) or as the latest row of an entity in the version's data set
  (``entity``, optionally on or before ``end``);
- ``POST /explain/decision-tree``: a surrogate tree of the model and its fidelity (a row is
  optional: the surrogate's answer for it beside the model's);
- ``GET /explain/feature-importance?model=&task=``: the global ranking of the features.

Each explains the deployed version the service holds (``model``, or the one that answers ``task``
as ``/predict/{task}`` picks it) with the explainer plugin of that name
(``treum.core.explain.explain``), on the data set and feature set its registration names
(``treum.serve.explain_target``, shared with ``treum report``). Scope ``read``: an explanation
reads a model, as ``GET /models`` does, and changes nothing, so POST is only how a row is sent.

The data of a version (its data set and features: a few seconds for ``users_sim``) are prepared
once and kept per version id. Explanations run one at a time, in a thread of their own: they are
CPU-bound (one at a time is what two cores can give without starving predictions) and they
never hold the event loop or the threads predictions run in. Every config value a request may
set is bounded, and so is the model work the config asks for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Query
from pydantic import Field, field_validator

from treum.core.errors import TreumError, UnavailableError, did_you_mean
from treum.core.evaluation import without_labels
from treum.core.explain import (
    ExplainTarget,
    applicable,
    capability_problems,
    chronological,
    explain,
    explainer_config,
    row_id,
)
from treum.serve.bars import RequestError
from treum.serve.explain_target import explain_target, version_frame
from treum.serve.live import LiveModel, load_version
from treum.serve.schemas import Strict

log = logging.getLogger(__name__)

ROUTES = {"shap": "shap", "lime": "lime", "counterfactual": "counterfactual", "decision-tree": "decision_tree",
          "feature-importance": "importance"}  # the path under /explain: the explainer plugin that answers it
NAME = r"^[A-Za-z0-9_\-]{1,100}$"
# what a request may set: each value multiplies the work of one request (every default lies inside)
CONFIG_RANGES: dict[str, tuple[float, float]] = {
    "background_size": (10, 5000), "num_samples": (50, 5000), "max_evals": (1, 5000), "n_repeats": (1, 20),
    "num_features": (1, 200), "grid": (2, 51), "pair_candidates": (0, 8), "refine_steps": (0, 50),
    "max_depth": (1, 8), "min_samples_leaf": (1, 1000), "held_out_fraction": (0.05, 0.95), "seed": (0, 2**32 - 1),
}
ANY_FINITE = {"threshold"}  # a number on the output's own scale: any finite value
MAX_PREDICTIONS = 1_000_000  # model predictions one request's config may ask for (background rows x evaluations)
MAX_PENDING = 8  # explanations queued or running per replica; one more is a 503 (retry)
MAX_CACHED = 4  # versions whose data are kept in memory (users_sim's frame is about 200 MB)


class ExplainRequest(Strict):
    model: str | None = Field(None, pattern=NAME, description="a deployed model's name (GET /models); or give task")
    task: str | None = Field(None, pattern=NAME, description="a task: its one deployed model (as /predict/{task})")
    row: dict[str, float] | None = Field(None, max_length=1000,
                                         description="the row's feature values: every feature the model reads")
    entity: str | None = Field(None, min_length=1, max_length=200,
                               description="or the latest row of this entity (an instrument, or user:item) in the "
                                           "version's data set, with its features computed")
    end: date | None = Field(None, description="with entity: its latest row on or before this day")
    config: dict[str, Any] = Field(default_factory=dict, max_length=20,
                                   description="the explainer's config overrides (docs/explainers.md), bounded")

    model_config = {**Strict.model_config, "json_schema_extra": {"examples": [
        {"model": "gbm_direction", "entity": "SPX", "end": "2016-06-30", "config": {"background_size": 100}}]}}

    @field_validator("row")
    @classmethod
    def finite(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (v or {}).items():
            if len(key) > 100:
                raise ValueError(f"feature name '{key[:40]}...' is longer than 100 characters")
            if not math.isfinite(value):
                raise ValueError(f"feature '{key}' must be a finite number, not {value}")
        return v


@dataclass
class Prepared:
    """A deployed version ready to explain: its ExplainTarget (with its model), and its data for ``entity`` rows."""

    target: ExplainTarget
    frame: pd.DataFrame  # the data set with its features, labels dropped
    entities: list[str]
    data: str


class Explainer:
    """Resolves the model, checks the request, and runs explanations on one thread with prepared data per version."""

    def __init__(self) -> None:
        # one worker: explanations are CPU-bound, and shap seeds numpy's global generator while it runs
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="treum-explain")
        self.prepared: OrderedDict[str, Prepared] = OrderedDict()
        self.pending = 0
        self.lock = threading.Lock()

    # before any work: the model, the explainer, the config ---------------------------------------
    @staticmethod
    def resolve(svc: Any, model: str | None, task: str | None) -> LiveModel:
        """The deployed version a request names; 404 for an unknown or undeployed model, 422 for a mismatch."""
        if model is None and task is None:
            raise RequestError(422, "name the model to explain ('model': a deployed model's name) or its task "
                                    "('task': its one deployed model answers)")
        if model is None:
            live = svc.model_for_task(task)  # 404 unknown task, 503 none deployed, 409 several: as /predict/{task}
        else:
            live = svc.live.get(model)
            deployed = ", ".join(sorted(svc.live)) or "none"
            if live is None and model in svc.plugins.specs("models"):
                raise RequestError(404, f"model '{model}' has no deployed version; deploy one with `treum registry "
                                        f"deploy {model}` (deployed: {deployed})")
            if live is None:
                known = sorted(set(svc.plugins.specs("models")) | set(svc.live))
                raise RequestError(404, f"model '{model}' is not registered{did_you_mean(model, known)} "
                                        f"(deployed: {deployed})")
            if task is not None and live.task_name != task:
                raise RequestError(422, f"model '{model}' answers task '{live.task_name}', not '{task}'; "
                                        "give one of them, or both as they are")
        if live.task is None or (live.model is None and live.error):
            raise RequestError(503, f"the deployed {live.label} cannot be loaded: {live.error}")
        return live

    @staticmethod
    def check(svc: Any, live: LiveModel, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """The explainer's complete config; 404 when it is not installed, 422 when it does not apply or a value
        is refused. Checked before any data is loaded: a refused request costs nothing."""
        specs = svc.plugins.specs("explainers")
        if name not in specs:
            raise RequestError(404, f"explainer '{name}' is not installed on this server (plugins.toml switches it "
                                    "off)")
        spec = specs[name]
        caps = live.model.spec.capabilities if live.model is not None else svc.plugins.model(live.name).capabilities
        problems = capability_problems(spec.requires, spec.excludes, caps)
        if problems:  # the wording of explain()'s own refusal, plus the routes that would answer
            others = applicable(caps, specs)
            routes = [path for path, n in ROUTES.items() if n in others]
            raise RequestError(422, f"explainer '{name}' does not apply to model '{live.name}' "
                                    f"({'; '.join(problems)}); explainers that do: {', '.join(others) or 'none'} "
                                    f"(explain routes that do: {', '.join(routes) or 'none'})")
        if "max_rows" in config:
            raise RequestError(422, "config.max_rows: a request explains one row; it is not a request's to set")
        try:
            values = explainer_config(spec, config)  # unknown keys and values of the wrong kind
        except TreumError as exc:
            raise RequestError(422, f"config: {exc}") from None
        for key in config:  # the explainers' own checks come later; these keep a request's work bounded
            value = values[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is None or isinstance(value, bool):
                continue
            if key in CONFIG_RANGES or key in ANY_FINITE:
                if not number or not math.isfinite(value):
                    raise RequestError(422, f"config.{key} must be a finite number")
                if key in CONFIG_RANGES:
                    low, high = CONFIG_RANGES[key]
                    if not low <= value <= high:
                        raise RequestError(422, f"config.{key} = {value:g} is outside [{low:g}, {high:g}], what one "
                                                "request may ask for (run larger explanations with the Python API, "
                                                "docs/explainers.md)")
                    if isinstance(low, int) and isinstance(high, int):  # a count: 21.0 means 21, 2.5 means nothing
                        if not float(value).is_integer():
                            raise RequestError(422, f"config.{key} must be a whole number, got {value:g}")
                        values[key] = int(value)
            elif number:  # a number whose cost this server cannot bound
                raise RequestError(422, f"config.{key} cannot be set over HTTP")
            elif isinstance(value, str) and len(value) > 100:
                raise RequestError(422, f"config.{key} is longer than 100 characters")
            elif isinstance(value, (list, tuple)) and (len(value) > 200 or not all(isinstance(v, str) for v in value)):
                raise RequestError(422, f"config.{key} must be a list of at most 200 feature names")
            elif not isinstance(value, (str, list, tuple)):
                raise RequestError(422, f"config.{key} cannot be a {type(value).__name__}")
        return values

    # the work, in the explain thread ------------------------------------------------------------------
    def prepare(self, svc: Any, live: LiveModel) -> Prepared:
        """The version's data and target, from the cache or loaded now (and kept, keyed by the version's id)."""
        with self.lock:
            hit = self.prepared.get(live.id)
            if hit is not None:
                self.prepared.move_to_end(live.id)
                return hit
        row = svc.registry.get_by_id(live.id)
        meta = row.model_metadata or {}
        data = str(meta.get("data"))
        try:
            model = live.model if live.model is not None else load_version(svc.registry, svc.plugins, live.sha256,
                                                                           live.task)  # a remote member: load it here
        except Exception:  # a missing or changed artifact: a fault of the server, whose paths stay in its log
            log.exception("loading the artifact of %s for an explanation failed", live.label)
            raise RequestError(503, f"the artifact of {live.label} cannot be loaded on this server (details in the "
                                    "server log)") from None
        try:
            frame = version_frame(svc.plugins, meta, row.training_data_version)
        except UnavailableError as exc:
            raise RequestError(503, f"{live.label} cannot be explained here: {exc}") from None
        except Exception as exc:  # a data set that fails to load: the details (paths) stay in the server log
            log.exception("loading the data set of %s for an explanation failed", live.label)
            raise RequestError(503, f"the data set '{data}' of {live.label} could not be loaded ({type(exc).__name__}; "
                                    "details in the server log)") from None
        try:
            target = explain_target(svc.plugins, model, live.task, frame)
        except TreumError as exc:
            raise RequestError(503, f"{live.label} cannot be explained on its data set '{data}': {exc}") from None
        frame = without_labels(frame)
        entry = Prepared(target, frame, sorted(map(str, frame.index.get_level_values("entity").unique())), data)
        with self.lock:
            self.prepared[live.id] = entry
            live_ids = {m.id for m in svc.live.values()}
            for key in [k for k in self.prepared if k not in live_ids and k != live.id]:
                del self.prepared[key]  # retired or replaced versions
            while len(self.prepared) > MAX_CACHED:
                self.prepared.popitem(last=False)
        return entry

    @staticmethod
    def request_row(entry: Prepared, live: LiveModel, values: dict[str, float]) -> pd.DataFrame:
        """The sent features in a copy of the newest background row (its other columns), under entity 'request'."""
        features = entry.target.features
        unknown = sorted(set(values) - set(features))
        missing = [f for f in features if f not in values]
        if unknown or missing:
            parts = ([f"missing features {missing}"] if missing else []) + \
                    ([f"unknown features {unknown}"] if unknown else [])
            raise RequestError(422, f"row: {'; '.join(parts)}; model '{live.name}' reads exactly: "
                                    f"{', '.join(features)}")
        rows = entry.target.background.iloc[[-1]].copy()
        for feature in features:
            rows[feature] = float(values[feature])
        names = list(rows.index.names)
        if "entity" in names:  # the values are the client's, not that entity's
            key = tuple("request" if n == "entity" else rows.index.get_level_values(n)[0] for n in names)
            rows.index = pd.MultiIndex.from_tuples([key], names=names)
        return rows

    @staticmethod
    def entity_row(entry: Prepared, live: LiveModel, entity: str, end: date | None) -> pd.DataFrame:
        """The entity's latest row in the version's data set (on or before ``end``)."""
        index = entry.frame.index
        rows = entry.frame[index.get_level_values("entity") == entity]
        if rows.empty:
            raise RequestError(422, f"entity '{entity}' has no row in the data set '{entry.data}' of {live.label}"
                                    f"{did_you_mean(entity, entry.entities)} (its entities: {', '.join(entry.entities[:5])}"
                                    f"{f' and {len(entry.entities) - 5} more' if len(entry.entities) > 5 else ''})")
        if end is not None:
            stamps = rows.index.get_level_values("timestamp")
            limit = pd.Timestamp(end + timedelta(days=1))
            if stamps.tz is not None:
                limit = limit.tz_localize(stamps.tz)
            before = rows[stamps < limit]
            if before.empty:
                raise RequestError(422, f"entity '{entity}' has no row on or before {end} (its rows span "
                                        f"{stamps.min().date()} .. {stamps.max().date()})")
            rows = before
        return chronological(rows).iloc[[-1]]

    def work(self, svc: Any, live: LiveModel, name: str, body: ExplainRequest, values: dict[str, Any],
             deadline: float) -> tuple[dict[str, Any], dict[str, str] | None] | None:
        entry = self.prepare(svc, live)
        if time.monotonic() > deadline:
            return None  # the client has had its 504; the prepared data stay for its retry
        rows = None
        if body.row is not None:
            rows = self.request_row(entry, live, body.row)
        elif body.entity is not None:
            rows = self.entity_row(entry, live, body.entity, body.end)
        self.check_work(values, entry.target)
        try:
            result = explain(name, entry.target, rows, values, svc.plugins.specs("explainers"))
        except TreumError as exc:  # a row with a missing feature, a counterfactual on a task without classes
            raise RequestError(422, str(exc)) from None
        key = None if rows is None else {"source": "request" if body.row is not None else "data", **row_id(rows, 0)}
        return result, key

    @staticmethod
    def check_work(values: dict[str, Any], target: ExplainTarget) -> None:
        """Refuse a config whose background rows times evaluations exceed MAX_PREDICTIONS (whichever path runs)."""
        rows = min(int(values.get("background_size") or 0), len(target.background))
        n = len(target.features)
        if "max_evals" in values:  # shap's permutation path; None means its default, 10 x (2 x features + 1)
            work, what = rows * (values["max_evals"] or 10 * (2 * n + 1)), "background_size x max_evals"
        elif "n_repeats" in values:  # permutation importance: every feature shuffled n_repeats times
            work, what = rows * n * values["n_repeats"], "background_size x features x n_repeats"
        else:
            return
        if work > MAX_PREDICTIONS:
            raise RequestError(422, f"config: {what} = {work:,} model predictions; one request may ask for at most "
                                    f"{MAX_PREDICTIONS:,}: lower background_size or the other factor")

    async def run(self, svc: Any, job: Callable[[float], Any]) -> Any:
        """``job(deadline)`` on the explain thread, within ``serve.request_timeout_s`` (504 past it)."""
        timeout = svc.settings.request_timeout_s
        with self.lock:
            if self.pending >= MAX_PENDING:
                raise RequestError(503, f"{self.pending} explanations are queued or running; retry in a moment")
            self.pending += 1

        deadline = time.monotonic() + timeout

        def counted() -> Any:
            try:
                return job(deadline)
            finally:
                with self.lock:
                    self.pending -= 1

        future = asyncio.get_running_loop().run_in_executor(self.executor, counted)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late failure is not "never retrieved"
        try:
            # shielded: a timed-out job still runs (it fills the cache for the retry) and still counts as pending
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            raise RequestError(504, f"no explanation within serve.request_timeout_s = {timeout:g} s; retry (the "
                                    "version's data go on loading and are kept for the next request)") from None

    async def answer(self, svc: Any, name: str, body: ExplainRequest) -> dict[str, Any]:
        """One explanation request, from resolving the model to the response body."""
        started = time.perf_counter()
        live = self.resolve(svc, body.model, body.task)
        values = self.check(svc, live, name, body.config)
        if body.row is not None and body.entity is not None:
            raise RequestError(422, "give the row to explain as 'row' (its feature values) or as 'entity', not both")
        if body.end is not None and body.entity is None:
            raise RequestError(422, "'end' picks an entity's row: give 'entity' with it")
        if svc.plugins.specs("explainers")[name].scope == "local" and body.row is None and body.entity is None:
            raise RequestError(422, f"explainer '{name}' explains one row: give 'row' (its feature values) or "
                                    "'entity' (its latest row in the model's data set)")
        out = await self.run(svc, lambda deadline: self.work(svc, live, name, body, values, deadline))
        if out is None:  # its deadline passed as its data were being prepared
            raise RequestError(504, f"no explanation within serve.request_timeout_s = "
                                    f"{svc.settings.request_timeout_s:g} s; retry (the version's data are kept)")
        result, key = out
        return {"model": live.name, "version": live.version, "task": live.task_name, "explainer": name,
                "result": result, "row": key, "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}


def add_explain_routes(app: FastAPI, prefix: str, require: Callable[[str], Any], service: Any) -> Explainer:
    """Mount the five explanation routes (scope ``read``); returns their Explainer (its cache, for tests)."""
    from treum.serve.api import ERRORS

    explainer = Explainer()
    about = {"shap": "SHAP values of one row: each feature's share of the move from the base value",
             "lime": "LIME: a local weighted linear model around one row",
             "counterfactual": "the smallest change of one row's mutable features that changes its predicted class",
             "decision-tree": "a shallow decision-tree surrogate of the model, its rules and its fidelity"}

    def post_route(path: str) -> None:
        async def endpoint(body: ExplainRequest, _: str = Depends(require("read")), svc=Depends(service)):
            return await explainer.answer(svc, ROUTES[path], body)

        endpoint.__doc__ = about[path] + " (docs/explainers.md)."
        app.add_api_route(f"{prefix}/explain/{path}", endpoint, methods=["POST"], tags=["explain"],
                          responses=ERRORS, name=f"explain_{ROUTES[path]}", summary=about[path])

    for path in about:
        post_route(path)

    @app.get(f"{prefix}/explain/feature-importance", tags=["explain"], responses=ERRORS)
    async def feature_importance(model: str | None = Query(None, pattern=NAME, description="a deployed model"),
                                 task: str | None = Query(None, pattern=NAME, description="or its task"),
                                 method: Literal["auto", "native", "permutation"] = Query("auto"),
                                 _: str = Depends(require("read")), svc=Depends(service)) -> dict[str, Any]:
        """Global feature importance: the model's own, or permutation importance on its output."""
        body = ExplainRequest(model=model, task=task, config={} if method == "auto" else {"method": method})
        return await explainer.answer(svc, "importance", body)

    return explainer
