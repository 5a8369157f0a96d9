"""The serving logic, in plain Python: live models, the regime router, ensembles, cache, A/B, logs.

``Service`` is what the HTTP routes call. It reads the registry's deployments
(and re-reads them every ``refresh_seconds``, so a deploy is picked up without
a restart), loads the live versions, and answers predictions. Ray Serve only
wraps it (``treum.serve.ray_app``); tests call it in-process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from treum.core.tasks import get_task
from treum.registry.schema import MLModel, ModelExperiment
from treum.registry.store import Registry
from treum.serve.ab import assign_arm
from treum.serve.bars import BarStore, RequestError, bars_digest, panel_from_bars
from treum.serve.cache import LRUCache, cache_key, make_cache
from treum.serve.logwriter import BatchLogWriter
from treum.serve.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class LiveModel:
    """A registered version the service can answer with."""

    id: str
    name: str
    version: str
    task: str
    sha256: str
    status: str
    features: str
    entities: tuple[str, ...] = ()
    model: Any = None  # loaded in this process (local placement), or None (remote)
    error: str | None = None  # why it could not be loaded


@dataclass
class Experiment:
    id: str
    name: str
    model_name: str
    control: LiveModel
    treatment: LiveModel
    treatment_percent: float


@dataclass
class MemberAnswer:
    name: str
    version: str | None
    status: str  # ok, failed, timeout, not deployed
    value: float | None = None
    latency_ms: float = 0.0
    error: str | None = None
    arm: str | None = None
    model_id: str | None = None
    cached: bool = False


def predict_last(model: Any, frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, float]:
    """A model's answer for the frame's last bar; a sequential model reads the whole frame as context."""
    data = frame if "sequential" in model.spec.capabilities else frame.iloc[[-1]]
    row = model.predict(data).iloc[-1]
    values = {c: float(row[c]) for c in columns}
    if not all(np.isfinite(v) for v in values.values()):
        raise RequestError(422, f"{model.spec.name} has no prediction for the last bar (too few bars for its window?)")
    return values


def _now_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


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
        self.settings = settings
        self.registry = registry
        self.plugins = plugins
        self.remote = remote_members or {}
        self.cache = make_cache(settings.cache_size, settings.cache_url)
        self.frames = LRUCache(256)
        self.log = BatchLogWriter(registry.sessions, settings.log_batch_size, settings.log_flush_seconds)
        self.bars = BarStore(plugins, [])
        self.live: dict[str, LiveModel] = {}
        self.experiments: dict[str, Experiment] = {}
        self._loaded: dict[str, LiveModel] = {}  # by model id: versions stay loaded while in use
        self._inflight: dict[str, asyncio.Future] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._refresher = None
        if start_refresher and settings.refresh_seconds > 0:
            self._refresher = threading.Thread(target=self._refresh_loop, name="treum-refresh", daemon=True)
            self._refresher.start()

    # registry state -----------------------------------------------------
    def _live_model(self, row: MLModel) -> LiveModel:
        key = str(row.id)
        if key in self._loaded:
            self._loaded[key].status = row.deployment_status
            return self._loaded[key]
        meta = row.model_metadata or {}
        live = LiveModel(
            id=key,
            name=row.model_name,
            version=row.model_version,
            task=row.model_type,
            sha256=row.artifact_sha256 or "",
            status=row.deployment_status,
            features=meta.get("features", "technical"),
        )
        placement = next((m.placement for m in self.settings.members if m.name == row.model_name), "local")
        if placement == "remote" and row.model_name in self.remote:
            try:
                self.remote[row.model_name].warm(key, row.model_name, row.model_version)
            except Exception as exc:
                log.warning("warming %s v%s failed: %s", row.model_name, row.model_version, exc)
        else:
            try:
                live.model = self.registry.load(row.model_name, row.model_version, self.plugins.specs("models"))
            except Exception as exc:  # an artifact that changed, a plugin switched off: the member is down
                live.error = f"{type(exc).__name__}: {exc}"
                log.error("cannot load %s v%s: %s", row.model_name, row.model_version, live.error)
        if meta.get("data"):
            self.bars.add_dataset(meta["data"])
        # the instruments it was fitted on (per-instrument models such as GARCH know no others)
        live.entities = tuple(meta.get("entities") or self.bars.instruments_of(meta.get("data")))
        self._loaded[key] = live
        return live

    def refresh(self) -> bool:
        """Re-read deployments and running experiments; returns whether anything changed."""
        with self.registry.sessions() as s:
            rows = list(s.execute(select(MLModel).where(MLModel.deployment_status == "deployed")).scalars())
            exp_rows = list(s.execute(select(ModelExperiment).where(ModelExperiment.status == "running")).scalars())
            exp_models = {
                m.id: m
                for m in s.execute(
                    select(MLModel).where(
                        MLModel.id.in_([e.control_model_id for e in exp_rows] + [e.treatment_model_id for e in exp_rows])
                    )
                ).scalars()
            } if exp_rows else {}
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
            return before != ({n: m.id for n, m in live.items()}, set(experiments))

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_seconds):
            try:
                if self.refresh():
                    log.info("deployments changed: %s", {n: m.version for n, m in self.live.items()})
            except Exception:
                log.exception("refreshing deployments failed; keeping the current ones")

    def close(self) -> None:
        """Stop refreshing and write every queued log row."""
        self._stop.set()
        self.log.close()
        self.registry.close()

    # inputs -------------------------------------------------------------
    def frame(self, instrument: str, bars: list[dict] | None, feature_set: str = "technical",
              as_of: pd.Timestamp | None = None) -> tuple[pd.DataFrame, str, str]:
        """The bars with features: (frame, last bar time, digest of sent bars or 'stored').

        Stored bars are located by binary search and their features come from a cache
        keyed by (instrument, last bar time), so a repeated request slices nothing.
        """
        s = self.settings
        if bars is not None:
            panel = panel_from_bars(instrument, bars, s.min_bars, s.max_bars)
            digest = bars_digest(panel)
            last = str(panel.index.get_level_values("timestamp")[-1].isoformat())
            return self._features(lambda: panel, f"{instrument}|{last}|{digest}", feature_set), last, digest
        start, stop, last_ts = self.bars.locate(instrument, s.context_bars, as_of)
        last = last_ts.isoformat()
        frame = self._features(lambda: self.bars.rows(instrument, start, stop), f"{instrument}|{last}|stored", feature_set)
        return frame, last, "stored"

    def _features(self, panel: Callable[[], pd.DataFrame], key: str, feature_set: str) -> pd.DataFrame:
        key = f"{key}|{feature_set}"
        frame = self.frames.get(key)
        if frame is None:
            rows = panel()
            frame = rows.join(self.plugins.feature_set(feature_set).compute(rows, {}))
            self.frames.set(key, frame)
        return frame

    # members ------------------------------------------------------------
    def _resolve(self, name: str, user_id: str | None) -> tuple[LiveModel | None, str | None, str | None]:
        """The version a user gets for a model name: an experiment's arm, or the live version."""
        for exp in self.experiments.values():
            if exp.model_name == name:
                arm = assign_arm(exp.id, user_id, exp.treatment_percent)
                return (exp.treatment if arm == "treatment" else exp.control), arm, exp.id
        return self.live.get(name), None, None

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
                raise RuntimeError(live.error or f"{live.name} v{live.version} is not loaded")
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

    async def _answer(self, live: LiveModel, frame: pd.DataFrame, columns: tuple[str, ...], instrument: str,
                      last: str, digest: str) -> tuple[dict[str, float], bool]:
        """``_call`` for a single model's route: a model that cannot answer is the request's 422."""
        try:
            return await self._call(live, frame, columns, instrument, last, digest, None)
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError(422, f"{live.name} cannot answer for {instrument} as of {last}: {exc}") from None

    async def _member(self, name: str, frame, instrument, last, digest, user_id) -> MemberAnswer:
        live, arm, _ = self._resolve(name, user_id)
        if live is None:
            return MemberAnswer(name, None, "not deployed", error=f"no deployed version of '{name}'")
        start = time.perf_counter()
        try:
            values, cached = await self._call(live, frame, ("p_up",), instrument, last, digest,
                                              self.settings.member_timeout_ms / 1000)
            return MemberAnswer(name, live.version, "ok", values["p_up"], _now_ms(start), arm=arm, model_id=live.id,
                                cached=cached)
        except asyncio.TimeoutError:
            return MemberAnswer(name, live.version, "timeout", latency_ms=_now_ms(start), arm=arm, model_id=live.id,
                                error=f"no answer within {self.settings.member_timeout_ms:g} ms")
        except Exception as exc:
            message = exc.message if isinstance(exc, RequestError) else f"{type(exc).__name__}: {exc}"
            return MemberAnswer(name, live.version, "failed", latency_ms=_now_ms(start), arm=arm, model_id=live.id,
                                error=message)

    def _single(self, name: str, what: str) -> LiveModel:
        live = self.live.get(name)
        if live is None:
            raise RequestError(503, f"no {what} model is deployed ('{name}'); deploy one with `treum registry deploy {name}`")
        if live.model is None and live.name not in self.remote:
            raise RequestError(503, f"the deployed {what} model {name} v{live.version} cannot be loaded: {live.error}")
        return live

    # routes -------------------------------------------------------------
    async def regime(self, as_of: pd.Timestamp | None = None) -> dict:
        """The market regime as of a time, from the regime model's own market (the index it learned on)."""
        live = self._single(self.settings.regime_model, "regime")
        if not live.entities:
            raise RequestError(503, f"the regime model {live.name} v{live.version} names no market instrument")
        market = live.entities[0]
        frame, last, _ = self.frame(market, None, live.features, as_of)
        values, cached = await self._answer(live, frame, ("p_bear",), market, last, "stored")
        p_bear = values["p_bear"]
        name = "bear" if p_bear > self.settings.regime_threshold else "bull"
        return {"market": market, "as_of": last, "regime": name, "p_bear": p_bear, "p_bull": 1 - p_bear,
                "model": live.name, "version": live.version, "model_id": live.id, "cached": cached}

    async def predict_price(self, instrument: str, bars: list[dict] | None, user_id: str | None) -> dict:
        """The combined direction signal: regime, then weighted members, answered together."""
        start = time.perf_counter()
        frame, last, digest = self.frame(instrument, bars)
        regime = await self.regime(pd.Timestamp(last))
        t_members = time.perf_counter()
        answers = await asyncio.gather(
            *[self._member(m.name, frame, instrument, last, digest, user_id) for m in self.settings.members]
        )
        members_ms = _now_ms(t_members)
        weights = self.settings.weights[regime["regime"]]
        ok = [a for a in answers if a.status == "ok" and weights.get(a.name, 0) > 0]
        dropped = [f"{a.name}: {a.status} ({a.error})" for a in answers if a.status != "ok"]
        if len(ok) < self.settings.min_members:
            raise RequestError(
                503,
                f"only {len(ok)} ensemble member(s) answered, {self.settings.min_members} needed; dropped: "
                + ("; ".join(dropped) or "none"),
            )
        total = sum(weights[a.name] for a in ok)
        used = {a.name: weights[a.name] / total for a in ok}
        p_up = float(sum(used[a.name] * a.value for a in ok))
        request_id = uuid.uuid4().hex
        answer = {
            "prediction_id": request_id,
            "instrument": instrument,
            "as_of": last,
            "horizon": "1 bar",
            "p_up": p_up,
            "signal": "up" if p_up > 0.5 else "down",
            "regime": {k: regime[k] for k in ("regime", "p_bear", "model", "version", "market", "as_of")},
            "weights": used,
            "configured_weights": dict(weights),
            "members": [
                {"name": a.name, "version": a.version, "status": a.status, "p_up": a.value, "latency_ms": a.latency_ms,
                 "cached": a.cached, "arm": a.arm, "error": a.error}
                for a in answers
            ],
            "dropped": dropped,
            "timing_ms": {"members": members_ms, "total": _now_ms(start)},
        }
        self._log_price(request_id, answer, answers, regime, frame, bars is not None, digest)
        return answer

    async def predict_volatility(self, instrument: str, bars: list[dict] | None) -> dict:
        live = self._single(self.settings.volatility_model, "volatility")
        frame, last, digest = self.frame(instrument, bars, live.features)
        values, _ = await self._answer(live, frame, get_task("volatility").prediction_columns, instrument, last, digest)
        daily = float(np.sqrt(values["var_h1"]))
        answer = {"prediction_id": uuid.uuid4().hex, "instrument": instrument, "as_of": last, "model": live.name,
                  "version": live.version, **values, "vol_daily_pct": daily,
                  "vol_21d_pct": float(np.sqrt(values["var_h21"])), "vol_annualised_pct": daily * np.sqrt(252)}
        self._log_single(answer, live, instrument, last, answer["var_h1"], None, "1d")
        return answer

    async def predict_regime(self, instrument: str, bars: list[dict] | None) -> dict:
        """The market regime as of the instrument's last bar (stored or sent)."""
        _, last, _ = self.frame(instrument, bars)
        answer = await self.regime(pd.Timestamp(last))
        answer["prediction_id"] = uuid.uuid4().hex
        answer["instrument"] = instrument
        live = self.live[self.settings.regime_model]
        self._log_single(answer, live, answer["market"], answer["as_of"], answer["p_bear"], answer["regime"], None)
        return answer

    # logging ------------------------------------------------------------
    def _inputs(self, instrument: str, last: str, frame: pd.DataFrame, sent: bool, digest: str) -> tuple[dict, str]:
        key = f"inputs|{instrument}|{last}|{digest}"
        hit = self.frames.get(key)
        if hit is None:
            hit = self._compute_inputs(instrument, last, frame, sent)
            self.frames.set(key, hit)
        return hit

    def _compute_inputs(self, instrument: str, last: str, frame: pd.DataFrame, sent: bool) -> tuple[dict, str]:
        row = frame.iloc[-1]
        feats = {k: (None if pd.isna(v) else float(v)) for k, v in row.items() if str(k).startswith("f_")}
        inputs = {"instrument": instrument, "last_bar": last, "bars_sent": sent, "features": feats}
        return inputs, hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def _log_price(self, rid: str, answer: dict, answers: list[MemberAnswer], regime: dict, frame, sent: bool,
                   bars_digest_: str) -> None:
        inputs, digest = self._inputs(answer["instrument"], answer["as_of"], frame, sent, bars_digest_)
        total_ms = int(round(answer["timing_ms"]["total"]))
        for a in answers:
            if a.status != "ok":
                continue
            self.log.prediction(
                model_id=uuid.UUID(a.model_id), prediction_id=f"{rid}:{a.name}", input_features=inputs,
                feature_hash=digest, prediction_probability=a.value, prediction_class="up" if a.value > 0.5 else "down",
                entity_type="instrument", entity_id=answer["instrument"], prediction_horizon="1 bar",
                inference_time_ms=int(round(a.latency_ms)), model_version=a.version, experiment_arm=a.arm,
            )
        self.log.prediction(
            model_id=None, prediction_id=rid, input_features=inputs, feature_hash=digest,
            prediction_probability=answer["p_up"], prediction_class=answer["signal"],
            ensemble_predictions={a.name: {"version": a.version, "p_up": a.value, "status": a.status, "arm": a.arm}
                                  for a in answers},
            ensemble_weights={"regime": regime["regime"], "p_bear": regime["p_bear"], "weights": answer["weights"]},
            entity_type="instrument", entity_id=answer["instrument"], prediction_horizon="1 bar",
            inference_time_ms=total_ms, model_version="ensemble",
        )

    def _log_single(self, answer: dict, live: LiveModel, instrument: str, last: str, value: float,
                    cls: str | None, horizon: str | None) -> None:
        self.log.prediction(
            model_id=uuid.UUID(live.id), prediction_id=answer["prediction_id"],
            input_features={"instrument": instrument, "last_bar": last}, prediction_value=value,
            prediction_class=cls, prediction_probability=value if cls else None, entity_type="instrument",
            entity_id=instrument, prediction_horizon=horizon, model_version=live.version,
        )

    def log_request(self, endpoint: str, request_id: str, started: float, status: int, error: str | None,
                    input_bytes: int, output_bytes: int, client_ip: str | None, model_id: str | None = None) -> None:
        ms = int(round((time.perf_counter() - started) * 1000))
        self.log.serving(
            request_id=request_id, model_id=uuid.UUID(model_id) if model_id else None, inference_time_ms=ms,
            total_response_time_ms=ms, api_endpoint=endpoint, error_occurred=status >= 400,
            error_type=str(status) if status >= 400 else None, error_message=error, input_size_bytes=input_bytes,
            output_size_bytes=output_bytes, client_ip=client_ip,
        )

    def health(self) -> dict:
        return {
            "status": "ok",
            "live": {n: {"version": m.version, "id": m.id, "loaded": m.model is not None or n in self.remote,
                         "error": m.error} for n, m in self.live.items()},
            "experiments": {e.id: {"model": e.model_name, "treatment_percent": e.treatment_percent}
                            for e in self.experiments.values()},
            "regime_model": self.settings.regime_model,
            "members": {m.name: m.placement for m in self.settings.members},
            "instruments": len(self.bars.instruments),
            "cache": {"hits": self.cache.hits, "misses": self.cache.misses},
            "logs_written": self.log.written,
            "log_batches_failed": self.log.failed_batches,
        }
