"""The serving logic, in plain Python: live models, task routing, the regime router, the ensemble, cache, A/B, logs.

``Service`` is what the HTTP routes call. It reads the registry's deployments
(and re-reads them every ``refresh_seconds``, so a deploy is picked up without
a restart), loads the live versions with their tasks, and answers predictions.
Everything that depends on what a prediction means (its columns, label, extra
fields, what is logged, how an outcome is scored) comes from the version's task;
which model answers a task, the aliases, the regime task and the ensemble come
from the config (``treum.serve.settings``). Ray Serve only wraps this
(``treum.serve.ray_app``); tests call it in-process.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import threading
import time
import uuid
from typing import Any

import pandas as pd

from treum.core.errors import ArtifactIntegrityError, NotFoundError, RegistryError, TreumError, did_you_mean
from treum.core.task import Task
from treum.registry.schema import MLModel
from treum.registry.store import Registry
from treum.serve.ab import assign_arm
from treum.serve.bars import BarStore, RequestError, Source, bars_digest, panel_from_bars
from treum.serve.cache import LRUCache, cache_key, make_cache
from treum.serve.ensemble import MemberAnswer, combine
from treum.serve.ids import new_hex
from treum.serve.live import Experiment, LiveModel, load_version, predict_last, task_of
from treum.serve.logwriter import BatchLogWriter
from treum.serve.outcomes import TaskScorer, record_outcome
from treum.serve.prediction_log import ensemble_rows, single_row
from treum.serve.settings import ENSEMBLE_ROUTE, ServeSettings, check_plugins

log = logging.getLogger(__name__)


_GC_TUNED = False  # tune_gc was called: this process serves, and settle_heap freezes what it loads


def tune_gc(gen0_threshold: int) -> None:
    """The garbage collector of a serving process: collections far rarer than Python's default.

    Called by the process that serves (the Ray replicas, a plain-uvicorn entry point), never by
    ``Service`` itself: a library must not retune a process it is only part of (a test run, the CLI).

    Measured in the 10,000-connection bench (gc.callbacks): with Python's thresholds
    (700, 10, 10) every request's short-lived objects, the queued log rows and each
    connection's objects were walked again and again; full collections took up to 1.1 s
    and 13 s of 40, and the event loop stood still meanwhile. With a gen-0 threshold of
    50,000 most request objects die before any collection sees them. 0 leaves Python's.
    """
    global _GC_TUNED
    if gen0_threshold > 0:
        _, t1, t2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, t1, t2)
        _GC_TUNED = True


def settle_heap() -> None:
    """Take what is loaded now out of the garbage collector's full passes (``gc.freeze``).

    A replica holds models, frames and their libraries: hundreds of thousands of long-lived
    objects that every full collection walked again (0.2-0.3 s each, a dozen times in 15 s
    under load). Frozen, a full pass walks only what requests made. Unfrozen and collected
    first, so the versions that were just replaced can still be freed. Only in a process that
    ``tune_gc`` made a serving one; the full collection stops the process for 0.2-1 s, once per
    change of deployments.
    """
    if not _GC_TUNED:
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _now_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _shown(head: dict[str, Any], values: dict[str, float], task: Task) -> dict[str, Any]:
    """An answer: ``head``, then each prediction column, the task's label and its extra fields."""
    extra = {**values, "label": task.label(values), **task.describe(values)}
    return {**head, **{k: v for k, v in extra.items() if k not in head}}


class Service:
    """Everything a replica needs to answer: registry, plugins, live models, cache, log writer."""

    def __init__(
        self,
        settings: ServeSettings,
        registry: Registry,
        plugins: Any,
        remote_members: dict[str, Any] | None = None,
        start_refresher: bool = True,
    ):
        check_plugins(settings, plugins)
        self.settings = settings
        self.registry = registry
        self.plugins = plugins
        self.remote = remote_members or {}
        self.cache = make_cache(settings.cache_size, settings.cache_url)
        self.frames = LRUCache(256)
        # the spool lives under the registry's home: a Ray replica may not have TREUM_HOME set
        self.log = BatchLogWriter(registry.sessions, settings.log_batch_size, settings.log_flush_seconds,
                                  home=registry.home, max_queue=settings.log_max_queue,
                                  close_budget_s=settings.log_close_budget_s)
        self.bars = BarStore(plugins, [])
        self.live: dict[str, LiveModel] = {}  # by model name: the deployed version
        self.experiments: dict[str, Experiment] = {}
        self._loaded: dict[str, LiveModel] = {}  # by model id: versions stay loaded while in use
        self._inflight: dict[str, asyncio.Future] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        from treum.serve.guards import KeyCache, RateLimiter

        self.keys = KeyCache(registry)  # API keys checked without a database write on the request path
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.refresh()
        self._refresher = None
        if start_refresher and settings.refresh_seconds > 0:
            self._refresher = threading.Thread(target=self._refresh_loop, name="treum-refresh", daemon=True)
            self._refresher.start()

    # registry state -----------------------------------------------------
    def _placement(self, name: str) -> str:
        ensemble = self.settings.ensemble
        member = ensemble.members.get(name) if ensemble is not None else None
        return member.placement if member is not None else "local"

    def _live_model(self, row: MLModel) -> LiveModel:
        key = str(row.id)
        if key in self._loaded:
            self._loaded[key].status = row.deployment_status
            return self._loaded[key]
        meta = row.model_metadata or {}
        live = LiveModel(id=key, name=row.model_name, version=row.model_version, task=None, task_name=row.model_type,
                         sha256=row.artifact_sha256 or "", status=row.deployment_status,
                         features=meta.get("features", "technical"))
        try:
            live.task = task_of(self.plugins, row.model_type, meta)
        except Exception as exc:  # its task plugin switched off, or a config the task no longer accepts
            # the answer and /health say what kind of failure; paths and hashes stay in the server log
            live.error = f"{type(exc).__name__} building its task (details in the server log)"
            log.error("cannot build the task of %s: %s: %s", live.label, type(exc).__name__, exc)
        if live.task is not None:
            self._load(live)
        if meta.get("data"):
            self.bars.add_dataset(meta["data"])
        # the instruments it was fitted on (per-instrument models such as GARCH know no others)
        live.entities = tuple(meta.get("entities") or self.bars.instruments_of(meta.get("data")))
        self._loaded[key] = live
        return live

    def _load(self, live: LiveModel) -> None:
        """Load a version here, or have its remote deployment warm it (``remote`` placement)."""
        if self._placement(live.name) == "remote" and live.name in self.remote:
            try:
                self.remote[live.name].warm(live.id, live.name, live.version)
            except Exception as exc:
                log.warning("warming %s failed: %s", live.label, exc)
            return
        try:
            live.model = load_version(self.registry, self.plugins, live.sha256, live.task)
        except Exception as exc:  # an artifact that changed, a plugin switched off: the model is down
            live.error = f"{type(exc).__name__} loading its artifact (details in the server log)"
            log.error("cannot load %s: %s: %s", live.label, type(exc).__name__, exc)

    def refresh(self) -> bool:
        """Re-read deployments and running experiments; returns whether anything changed."""
        rows = self._deployed_rows()
        exp_rows = self.registry.list_experiments("running")
        ids = {e.control_model_id for e in exp_rows} | {e.treatment_model_id for e in exp_rows}
        exp_models = {}
        for model_id in ids:
            try:
                exp_models[model_id] = self.registry.get_by_id(model_id)
            except NotFoundError:
                continue
        with self._lock:
            before = {n: m.id for n, m in self.live.items()}, set(self.experiments)
            live = {row.model_name: self._live_model(row) for row in rows}
            experiments = {}
            for e in exp_rows:
                control, treatment = exp_models.get(e.control_model_id), exp_models.get(e.treatment_model_id)
                if control is None or treatment is None:
                    continue
                pct = float((e.traffic_allocation or {}).get("treatment", 50))
                experiments[str(e.id)] = Experiment(
                    str(e.id), e.experiment_name, control.model_name, self._live_model(control),
                    self._live_model(treatment), pct,
                )
            self.live, self.experiments = live, experiments
            in_use = {m.id for m in live.values()} | {
                x.id for e in experiments.values() for x in (e.control, e.treatment)
            }
            self._loaded = {k: v for k, v in self._loaded.items() if k in in_use}
            changed = before != ({n: m.id for n, m in live.items()}, set(experiments))
        if changed:
            settle_heap()
        return changed

    def _deployed_rows(self) -> list[MLModel]:
        return [m for m in self.registry.list_models() if m.deployment_status == "deployed"]

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_seconds):
            try:
                self.keys.flush_last_used()
            except Exception:
                log.exception("recording when API keys were last used failed; will retry")
            try:
                if self.refresh():
                    log.info("deployments changed: %s", {n: m.version for n, m in self.live.items()})
            except Exception:
                log.exception("refreshing deployments failed; keeping the current ones")

    def close(self, budget_s: float | None = None) -> None:
        """Stop refreshing; write the queued log rows within the budget (the rest stays in the durable spool)."""
        self._stop.set()
        self.log.close(budget_s)
        self.registry.close()

    # which model answers ---------------------------------------------------
    def route_names(self) -> list[str]:
        """What ``/predict/<name>`` accepts: the registered tasks, the aliases, and the ensemble."""
        names = list(self.plugins.specs("tasks")) + list(self.settings.aliases)
        return names + ([ENSEMBLE_ROUTE] if self.settings.ensemble is not None else [])

    def _unknown_route(self, name: str) -> RequestError:
        tasks = list(self.plugins.specs("tasks"))
        aliases = list(self.settings.aliases)
        also = f"; aliases: {', '.join(aliases)}" if aliases else ""
        if self.settings.ensemble is not None:
            also += f"; '{ENSEMBLE_ROUTE}': the ensemble of {self.settings.ensemble.task} models"
        return RequestError(404, f"unknown task '{name}'{did_you_mean(name, self.route_names())} "
                                 f"(registered tasks: {', '.join(tasks) or 'none'}{also})")

    def deployed_of(self, task: str) -> list[LiveModel]:
        """The deployed versions whose task is ``task``, by name."""
        return sorted((m for m in self.live.values() if m.task_name == task), key=lambda m: m.name)

    def model_for_task(self, task: str, chosen: str | None = None, key: str | None = None) -> LiveModel:
        """The deployed version that answers ``task``: ``chosen`` (config), else the only deployed one of the task.

        Unknown task: 404; nothing deployed: 503 saying how to deploy; several deployed and
        none configured: 409 listing them.
        """
        if task not in self.plugins.specs("tasks"):
            raise self._unknown_route(task)
        if chosen is None:
            chosen, key = self.settings.model_for(task), f"serve.tasks.{task}.model"
        if chosen is not None:
            live = self.live.get(chosen)
            if live is None:
                raise RequestError(503, f"{key} is '{chosen}', which has no deployed version; deploy one with "
                                        f"`treum registry deploy {chosen}`")
            return live
        deployed = self.deployed_of(task)
        if not deployed:
            models = [n for n, s in self.plugins.specs("models").items() if s.task == task and not s.baseline]
            raise RequestError(
                503, f"no model of task '{task}' is deployed; train one (`treum train task={task} model=NAME`) and "
                     f"deploy it with `treum registry deploy NAME` (models of task '{task}': "
                     f"{', '.join(models) or 'none registered'})")
        if len(deployed) > 1:
            raise RequestError(
                409, f"{len(deployed)} deployed models answer task '{task}': "
                     f"{', '.join(m.label for m in deployed)}; set serve.tasks.{task}.model to the one that should "
                     f"(e.g. `treum serve +serve.tasks.{task}.model={deployed[0].name}`)")
        return deployed[0]

    def _resolve(self, name: str, user_id: str | None) -> tuple[LiveModel | None, str | None, str | None]:
        """The version a user gets for a model name: an experiment's arm, or the live version."""
        for exp in self.experiments.values():
            if exp.model_name == name:
                arm = assign_arm(exp.id, user_id, exp.treatment_percent)
                return (exp.treatment if arm == "treatment" else exp.control), arm, exp.id
        return self.live.get(name), None, None

    def _usable(self, live: LiveModel) -> Task:
        if live.task is None or (live.model is None and live.name not in self.remote):
            raise RequestError(503, f"the deployed {live.label} cannot be loaded: {live.error}")
        return live.task

    # inputs -------------------------------------------------------------
    def source(self, instrument: str, bars: list[dict] | None, as_of: pd.Timestamp | None = None) -> Source:
        """The bars of a request: sent ones (validated) or the stored ones up to ``as_of``."""
        s = self.settings
        if bars is not None:
            panel = panel_from_bars(instrument, bars, s.min_bars, s.max_bars)
            last = str(panel.index.get_level_values("timestamp")[-1].isoformat())
            return Source(instrument, last, bars_digest(panel), lambda: panel, True)
        start, stop, last_ts = self.bars.locate(instrument, s.context_bars, as_of)
        return Source(instrument, last_ts.isoformat(), "stored", lambda: self.bars.rows(instrument, start, stop), False)

    def frame(self, source: Source, feature_set: str = "technical") -> pd.DataFrame:
        """The bars with features; cached by (instrument, last bar, digest, feature set), so a repeat slices nothing."""
        key = f"{source.instrument}|{source.last}|{source.digest}|{feature_set}"
        frame = self.frames.get(key)
        if frame is None:
            rows = source.rows()
            frame = rows.join(self.plugins.feature_set(feature_set).compute(rows, {}))
            self.frames.set(key, frame)
        return frame

    async def asource(self, instrument: str, bars: list[dict] | None, as_of: pd.Timestamp | None = None) -> Source:
        """``source`` off the event loop when bars were sent (validating them is CPU work)."""
        if bars is None:
            return self.source(instrument, None, as_of)  # a binary search: cheap
        return await asyncio.to_thread(self.source, instrument, bars, as_of)

    async def aframe(self, source: Source, feature_set: str = "technical") -> pd.DataFrame:
        """``frame`` off the event loop: a cache hit answers at once, features are computed in a worker thread."""
        frame = self.frames.get(f"{source.instrument}|{source.last}|{source.digest}|{feature_set}")
        if frame is not None:
            return frame
        return await asyncio.to_thread(self.frame, source, feature_set)

    # calling a model ------------------------------------------------------
    async def _call(self, live: LiveModel, frame: pd.DataFrame, columns: tuple[str, ...], instrument: str,
                    last: str, digest: str, timeout_s: float | None) -> tuple[dict[str, float], bool]:
        """One prediction of the last bar, every asked column at once, through the cache."""
        key = cache_key(live.id, instrument, last, digest) + "|" + ",".join(columns)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        # concurrent requests for one uncached answer share one computation (no thundering herd)
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():  # a stopped loop's leftover
            if live.model is None and live.name not in self.remote:
                raise RuntimeError(live.error or f"{live.label} is not loaded")
            task = asyncio.ensure_future(self._compute(live, frame, columns, key))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # shield: a member that times out for this answer still finishes and fills the cache,
        # and a remote replica is not cancelled half-way through loading a version
        values = await (asyncio.wait_for(asyncio.shield(task), timeout_s) if timeout_s else task)
        return values, False

    async def _compute(self, live: LiveModel, frame: pd.DataFrame, columns: tuple[str, ...], key: str) -> dict[str, float]:
        if live.model is not None:
            values = await asyncio.to_thread(predict_last, live.model, frame, columns)
        else:
            values = await self.remote[live.name].predict(live.id, live.name, live.version, frame, columns)
        self.cache.set(key, values)
        return values

    def source_for(self, live: LiveModel, source: Source) -> Source:
        """The bars a model answers from: the universe's for a ``cross_sectional`` model (local or remote,
        by its registered spec), the instrument's own for any other."""
        spec = self.plugins.specs("models").get(live.name)
        if spec is not None and "cross_sectional" in spec.capabilities:
            return self.universe(live, source)
        return source

    def universe(self, live: LiveModel, source: Source) -> Source:
        """For a ``cross_sectional`` model: the stored bars of every entity it was fitted on, up to the source's
        last bar, ordered so that the instrument's row is the frame's last (the row ``predict_last`` answers)."""
        if source.sent:
            raise RequestError(422, f"{live.name} weighs {source.instrument} against the other instruments it was "
                                    "fitted on, whose bars a request cannot send; omit 'bars' to use the stored ones")
        if source.instrument not in live.entities:
            raise RequestError(422, f"{live.name} answers for the instruments it was fitted on together "
                                    f"({', '.join(live.entities) or 'none recorded'}), not '{source.instrument}'")
        as_of = pd.Timestamp(source.last)
        n = self.settings.context_bars

        def rows() -> pd.DataFrame:
            parts = []
            for entity in live.entities:
                try:
                    start, stop, _ = self.bars.locate(entity, n, as_of)
                except RequestError:
                    continue  # an instrument with no bars yet on that date: not in the universe then
                parts.append(self.bars.rows(entity, start, stop))
            panel = pd.concat(parts)
            ts = panel.index.get_level_values("timestamp")
            mine = (panel.index.get_level_values("entity") == source.instrument) & (ts == as_of)
            return pd.concat([panel[~mine].sort_index(), panel[mine]])

        return Source(source.instrument, source.last, f"universe:{live.id}", rows, False)

    async def _answer(self, live: LiveModel, source: Source) -> tuple[dict[str, float], bool]:
        """A single model's answer for the source's last bar: a model that cannot answer is the request's 422."""
        task = self._usable(live)
        source = self.source_for(live, source)
        frame = await self.aframe(source, live.features)
        try:
            return await self._call(live, frame, task.prediction_columns(), source.instrument, source.last,
                                    source.digest, None)
        except RequestError:
            raise
        except (ValueError, KeyError, TreumError) as exc:  # the model's own word on its input (e.g. an instrument
            if isinstance(exc, (ArtifactIntegrityError, RegistryError)):  # it does not know); never its own faults
                log.warning("%s failed for %s: %s: %s", live.label, source.instrument, type(exc).__name__, exc)
                raise RequestError(503, f"{live.name} failed to answer for {source.instrument} as of {source.last} "
                                        f"({type(exc).__name__}; details in the server log)") from None
            raise RequestError(422, f"{live.name} cannot answer for {source.instrument} as of {source.last}: {exc}") from None
        except Exception as exc:
            log.warning("%s failed for %s: %s: %s", live.label, source.instrument, type(exc).__name__, exc)
            raise RequestError(503, f"{live.name} failed to answer for {source.instrument} as of {source.last} "
                                    f"({type(exc).__name__}; details in the server log)") from None

    # routes -------------------------------------------------------------
    async def predict(self, name: str, instrument: str, bars: list[dict] | None, user_id: str | None) -> dict:
        """``/predict/<name>``: a task, an alias of one (``serve.aliases``), or the ensemble (``price``)."""
        if name == ENSEMBLE_ROUTE and self.settings.ensemble is not None:
            return await self.predict_ensemble(instrument, bars, user_id)
        alias = self.settings.aliases.get(name)
        if alias is not None:
            return await self.predict_task(alias.task, instrument, bars, user_id, market=alias.instrument == "market")
        if name == ENSEMBLE_ROUTE:
            raise RequestError(404, f"'/predict/{ENSEMBLE_ROUTE}' answers the ensemble, and none is configured: "
                                    "add serve.ensemble (see conf/serve/ensemble.yaml)")
        return await self.predict_task(name, instrument, bars, user_id)

    async def predict_task(self, task: str, instrument: str, bars: list[dict] | None, user_id: str | None = None,
                           market: bool = False) -> dict:
        """A task's answer from the model that answers it, in the task's prediction columns.

        ``market``: read the model's own market (the first instrument it was fitted on) as of
        the instrument's last bar, instead of the instrument.
        """
        spec = self.plugins.specs("tasks").get(task)
        if spec is not None and spec.data_kind != "panel":  # texts, not an instrument's bars
            raise RequestError(422, f"task '{task}' reads text, not an instrument's bars; its plugin's route answers it "
                                    f"(POST /api/v1/ml/predict/{task} with a text; see GET /openapi.json)")
        named = self.model_for_task(task)
        live, arm, _ = self._resolve(named.name, user_id)
        source = await self.asource(instrument, bars)
        head = {"prediction_id": new_hex(), "task": task, "instrument": instrument}
        if market:
            source = self.source(self._market(live), None, pd.Timestamp(source.last))
            head["market"] = source.instrument
        values, cached = await self._answer(live, source)
        answer = _shown({**head, "as_of": source.last, "model": live.name, "version": live.version,
                         "model_id": live.id}, values, live.task)
        answer["cached"] = cached
        self._log_single(answer["prediction_id"], live, source, values, arm)
        return answer

    def _market(self, live: LiveModel) -> str:
        if not live.entities:
            raise RequestError(503, f"{live.label} names no instrument it was fitted on, so it has no market to read")
        return live.entities[0]

    async def regime(self, as_of: pd.Timestamp | None = None) -> dict:
        """The market state as of a time: ``label()`` of the regime task's answer on its model's own market."""
        cfg = self.settings.regime
        if cfg is None:
            raise RequestError(404, "no regime task is configured: add serve.regime (see conf/serve/ensemble.yaml)")
        live = self.model_for_task(cfg.task, cfg.model, "serve.regime.model")
        source = self.source(self._market(live), None, as_of)
        values, cached = await self._answer(live, source)
        return _shown({"task": live.task_name, "market": source.instrument, "as_of": source.last, "model": live.name,
                       "version": live.version, "model_id": live.id}, values, live.task) | {"cached": cached}

    async def predict_ensemble(self, instrument: str, bars: list[dict] | None, user_id: str | None) -> dict:
        """The combined answer: the regime's label picks the weights, the members answer together."""
        ens = self.settings.ensemble
        if ens is None:
            raise RequestError(404, "no ensemble is configured: add serve.ensemble (see conf/serve/ensemble.yaml)")
        start = time.perf_counter()
        source = await self.asource(instrument, bars)
        await self.aframe(source)  # the members' features, once, off the event loop
        regime = await self.regime(pd.Timestamp(source.last))
        weights = ens.weights.get(str(regime["label"]))
        if weights is None:
            raise RequestError(
                503, f"the regime model {regime['model']} v{regime['version']} says '{regime['label']}', and "
                     f"serve.ensemble.weights has no entry for it (entries: {', '.join(ens.weights)})")
        t_members = time.perf_counter()
        answers = list(await asyncio.gather(*[self._member(name, source, user_id) for name in ens.members]))
        members_ms = _now_ms(t_members)
        first = next((a for a in answers if a.status == "ok"), None)
        columns = first.task.prediction_columns() if first is not None else ()
        for a in answers:  # the weighted mean needs one set of columns
            if a.status == "ok" and a.task.prediction_columns() != columns:
                a.status, a.error = "failed", (f"predicts {list(a.task.prediction_columns())}; the ensemble combines "
                                               f"{list(columns)} (from {first.name})")
        combined = combine(answers, weights, columns, ens.min_members)
        task = combined.answered[0].task
        head = {"prediction_id": new_hex(), "task": ens.task, "instrument": instrument, "as_of": source.last}
        answer = _shown(head, combined.values, task)
        answer.update({
            # under the state task's own name (serve.regime.task): the market state that chose the weights
            self.settings.regime.task: {k: v for k, v in regime.items() if k != "cached"},
            "weights": combined.used,
            "configured_weights": dict(weights),
            "members": [a.as_dict(columns) for a in answers],
            "dropped": combined.dropped,
            "timing_ms": {"members": members_ms, "total": _now_ms(start)},
        })
        self._log_ensemble(answer, answers, task, combined.values, regime, source)
        return answer

    async def _member(self, name: str, source: Source, user_id: str | None) -> MemberAnswer:
        live, arm, _ = self._resolve(name, user_id)
        if live is None:
            return MemberAnswer(name, None, "not deployed", error=f"no deployed version of '{name}'")
        start = time.perf_counter()
        task = live.task
        try:
            if task is None:
                raise RuntimeError(live.error)
            if live.task_name != self.settings.ensemble.task:
                raise RuntimeError(f"a model of task '{live.task_name}'; the ensemble combines "
                                   f"'{self.settings.ensemble.task}' models")
            mine = self.source_for(live, source)
            values, cached = await self._call(live, await self.aframe(mine, live.features), task.prediction_columns(),
                                              mine.instrument, mine.last, mine.digest,
                                              self.settings.ensemble.member_timeout_ms / 1000)
            return MemberAnswer(name, live.version, "ok", values, _now_ms(start), arm=arm, model_id=live.id,
                                cached=cached, task=task)
        except asyncio.TimeoutError:
            return MemberAnswer(name, live.version, "timeout", latency_ms=_now_ms(start), arm=arm, model_id=live.id,
                                error=f"no answer within {self.settings.ensemble.member_timeout_ms:g} ms")
        except Exception as exc:
            if isinstance(exc, RequestError):
                message = exc.message
            else:  # the answer names the kind of failure; paths, hashes and tracebacks go to the server log
                log.warning("member %s failed: %s: %s", live.label, type(exc).__name__, exc)
                message = f"{type(exc).__name__} (details in the server log)"
            return MemberAnswer(name, live.version, "failed", latency_ms=_now_ms(start), arm=arm, model_id=live.id,
                                error=message, input_error=isinstance(exc, RequestError) and exc.status < 500)

    # logging ------------------------------------------------------------
    def _inputs(self, source: Source) -> tuple[dict, str]:
        key = f"inputs|{source.instrument}|{source.last}|{source.digest}"
        hit = self.frames.get(key)
        if hit is None:
            row = self.frame(source).iloc[-1]
            feats = {k: (None if pd.isna(v) else float(v)) for k, v in row.items() if str(k).startswith("f_")}
            inputs = {"instrument": source.instrument, "last_bar": source.last, "bars_sent": source.sent,
                      "features": feats}
            hit = inputs, hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
            self.frames.set(key, hit)
        return hit

    def _log_single(self, prediction_id: str, live: LiveModel, source: Source, values: dict[str, float],
                    arm: str | None) -> None:
        self.log.prediction(**single_row(prediction_id, live, source, values, arm))

    def _log_ensemble(self, answer: dict, answers: list[MemberAnswer], task: Task, values: dict[str, float],
                      regime: dict, source: Source) -> None:
        inputs, digest = self._inputs(source)
        for row in ensemble_rows(answer, answers, task, values, regime, inputs, digest):
            self.log.prediction(**row)

    def log_request(self, endpoint: str, request_id: str, started: float, status: int, error: str | None,
                    input_bytes: int, output_bytes: int, client_ip: str | None, model_id: str | None = None) -> None:
        ms = int(round((time.perf_counter() - started) * 1000))
        self.log.serving(
            request_id=request_id, model_id=uuid.UUID(model_id) if model_id else None, inference_time_ms=ms,
            total_response_time_ms=ms, api_endpoint=endpoint, error_occurred=status >= 400,
            error_type=str(status) if status >= 400 else None, error_message=error, input_size_bytes=input_bytes,
            output_size_bytes=output_bytes, client_ip=client_ip,
        )

    # outcomes -----------------------------------------------------------
    def record_outcome(self, prediction_id: str, actual_value: float, actor: str) -> int:
        """Score a prediction's rows, each with the task of its model (an ensemble row: the task it logged)."""
        scorer = TaskScorer(self.plugins, self.registry, self._loaded_task)
        return record_outcome(self.registry, scorer, prediction_id, actual_value, actor,
                              self.settings.log_flush_seconds)

    def _loaded_task(self, model_id: str) -> Task | None:
        live = self._loaded.get(model_id)
        return live.task if live is not None else None

    # health -------------------------------------------------------------
    def answering(self, task: str) -> dict[str, Any]:
        """Which version answers ``/predict/<task>`` now, or the status and error a request would get."""
        try:
            live = self.model_for_task(task)
            return {"model": live.name, "version": live.version, "instruments": list(live.entities)}
        except RequestError as exc:
            return {"model": None, "status": exc.status, "error": exc.message}

    def health(self) -> dict:
        s = self.settings
        return {
            "status": "ok",
            "live": {n: {"version": m.version, "id": m.id, "task": m.task_name,
                         "loaded": m.model is not None or n in self.remote, "error": m.error}
                     for n, m in self.live.items()},
            "tasks": {t: self.answering(t) for t in self.plugins.specs("tasks")},
            "aliases": {n: {"task": a.task, "instrument": a.instrument} for n, a in s.aliases.items()},
            "experiments": {e.id: {"model": e.model_name, "treatment_percent": e.treatment_percent}
                            for e in self.experiments.values()},
            "state": {"task": s.regime.task, "model": s.regime.model} if s.regime else None,
            "ensemble": {"task": s.ensemble.task, "members": {n: m.placement for n, m in s.ensemble.members.items()}}
            if s.ensemble else None,
            "instruments": len(self.bars.instruments),
            "cache": {"hits": self.cache.hits, "misses": self.cache.misses},
            "logs_written": self.log.written,
            "logs": self.log.stats(),
            "log_batches_failed": self.log.failed_batches,
        }
