"""The FastAPI application of ``treum serve``: the specification's ``/api/v1/ml`` routes.

``create_app(get_service, plugins)`` builds it around a ``Service``, with the
routes plugins register mounted under the same prefix; Ray Serve wraps the same
app (``treum.serve.ray_app``) and the benchmark serves it with plain uvicorn for
comparison. ``POST /predict/{task}`` answers any registered task; ``price`` is
the ensemble and the specification's other named routes are aliases from the
config. Routes call the service and the registry's API; none opens a
transaction. Every error is a 4xx (or a 503 when nothing can answer) with a
message that says what to fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from treum.core.errors import (
    ArtifactIntegrityError,
    NotFoundError,
    PluginError,
    RegistryError,
    TreumError,
    UnavailableError,
)
from treum.core.model import verify_artifact
from treum.core.task import build_task
from treum.registry.schema import MLModel
from treum.registry.store import clean_json
from treum.serve import schemas as S
from treum.serve.ab import two_proportion_test
from treum.serve.bars import RequestError
from treum.serve.guards import (
    BodyLimitMiddleware,
    RateLimitMiddleware,
    RequestIdMiddleware,
    send_json,
    key_allows,
    missing_key_error,
    parse_bearer,
    request_id,
)
from treum.serve.plugin_routes import mount_plugin_routes
from treum.serve.router import Service
from treum.serve.settings import RESERVED_ROUTES

log = logging.getLogger(__name__)

PREFIX = "/api/v1/ml"
ERRORS = {status: {"model": S.ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 504)}


def _model_out(m: MLModel, detail: bool = False) -> dict:
    out = {"id": m.id, "name": m.model_name, "version": m.model_version, "task": m.model_type,
           "family": m.model_architecture, "status": m.deployment_status, "artifact_sha256": m.artifact_sha256,
           "served_predictions": m.served_predictions or 0, "created_at": m.created_at,
           "deployment_date": m.deployment_date}
    if detail:
        out["walk_forward"] = (m.custom_metrics or {}).get("walk_forward")
        out["baselines"] = (m.custom_metrics or {}).get("baselines")
        out["config"] = m.model_config
    return out


def _bars(body: S.PredictRequest) -> list[dict] | None:
    return [b.model_dump() for b in body.bars] if body.bars is not None else None


def error_status(exc: TreumError) -> int:
    """The HTTP status of a treum error: unknown names 404, refused registry operations 409, bad values 422,
    something not there now (nothing deployed) 503."""
    if isinstance(exc, UnavailableError):
        return 503
    return 404 if isinstance(exc, (PluginError, NotFoundError)) else 409 if isinstance(exc, RegistryError) else 422


def _experiment_out(e) -> dict[str, Any]:
    return {"id": str(e.id), "name": e.experiment_name, "status": e.status,
            "control_model_id": str(e.control_model_id), "treatment_model_id": str(e.treatment_model_id),
            "traffic_allocation": e.traffic_allocation, "start_date": str(e.start_date), "end_date": str(e.end_date)}


class ServingLogMiddleware:
    """Logs every API request to ``model_serving_logs`` through the batch writer (pure ASGI: cheap).

    The request's row is logged just before the last part of the answer is sent; with
    ``serve.durable_ack`` the answer (its status line held back with it) waits until the
    request's rows (its predictions and this row) are fsynced to the spool, so an answer the
    client received is never lost to a ``kill -9`` of the replica. Rows that cannot be made
    durable within ``serve.durable_ack_timeout_s`` turn the answer into a 503 (retry).
    """

    def __init__(self, app, get_service: Callable[[], Service]):
        self.app = app
        self.get_service = get_service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "bytes": 0, "logged": False, "start": None}

        def log_row() -> Service | None:
            state["logged"] = True
            service = self.get_service()
            if service is not None:
                client = scope.get("client")
                # the bytes actually received (RequestIdMiddleware counts them), never the client's Content-Length
                received = int(scope.get("state", {}).get("body_bytes", 0))
                service.log_request(
                    scope["path"][:200], request_id(scope), started, state["status"], None,
                    received, state["bytes"], client[0] if client else None,
                )
            return service

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                service = self.get_service()
                if service is not None and service.settings.durable_ack:
                    state["start"] = message  # sent with the last part of the body, once that is durable
                    return
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
                final = not message.get("more_body", False)
                if final and not state["logged"]:
                    service = log_row()
                    if state["start"] is not None and service is not None and not await _durable(service):
                        state["start"] = None
                        await send_json(send, 503, {
                            "error": "the answer could not be recorded durably (the log spool under TREUM_HOME "
                                     "did not confirm it in time); retry",
                            "request_id": request_id(scope)}, [(b"x-request-id", request_id(scope).encode())])
                        return
                if state["start"] is not None:  # a body in several parts: the status line goes with the first
                    start, state["start"] = state["start"], None
                    await send(start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not state["logged"]:  # no answer was sent (the client left, or an error before the body)
                log_row()


async def _durable(service: Service) -> bool:
    try:
        return await asyncio.wait_for(service.log.durable(), service.settings.durable_ack_timeout_s)
    except asyncio.TimeoutError:
        log.error("the log spool did not confirm a request's rows within serve.durable_ack_timeout_s = %g s",
                  service.settings.durable_ack_timeout_s)
        return False


def _telemetry() -> dict[str, bool] | None:
    """FastAPI's OpenTelemetry only where a provider is set up by the time the app is built.

    Unconfigured, FastAPI still asks OpenTelemetry's global providers (and the environment) on
    every request whether one has appeared since: a few per cent of a replica's time per request.
    Set the providers (or FASTAPI_OTEL_AUTO_CONFIGURE=true) before ``treum serve`` starts.
    """
    import os

    try:
        from fastapi.telemetry._api import _unconfigured
        from opentelemetry import _logs, metrics, trace
    except ImportError:  # another FastAPI: its own default
        return None
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    if os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or not all(map(_unconfigured, providers)):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(get_service: Callable[[], Service], plugins: Any = None, close_on_shutdown: bool = False) -> FastAPI:
    """The API around the service that ``get_service()`` returns (None while it starts).

    With ``plugins``, the routes that plugins register (``treum_serve_routes``) are mounted
    under the API prefix; one that clashes with a built-in route is a PluginError here, at start-up.
    """
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        yield
        svc = get_service()
        if close_on_shutdown and svc is not None:  # plain uvicorn: flush the logs (Ray closes the replica itself)
            await asyncio.to_thread(svc.close)

    app = FastAPI(
        lifespan=lifespan,
        telemetry=_telemetry(),
        title="treum",
        version="0.1.0",
        description="Predictions of any task from the models the treum registry says are deployed, and an "
                    "ensemble combined per market regime.",
    )

    async def service() -> Service:  # async: a sync dependency would cost a thread hop per request
        svc = get_service()
        if svc is None:
            raise RequestError(503, "the service is starting; retry in a moment")
        return svc

    async def authorise(authorization: str | None, svc: Service, scope: str) -> str:
        token = parse_bearer(authorization)
        if token is None:
            raise missing_key_error()
        key = await svc.keys.check(token)
        if key is None:
            raise RequestError(401, "the API key is unknown, revoked or expired")
        if not key_allows(key, scope):
            raise RequestError(403, f"the API key '{key.name}' has the scopes {sorted(key.scopes or [])}; this route "
                                    f"needs '{scope}' (`treum registry keys create NAME --scope {scope}`)")
        return key.name

    def require(scope: str):
        """A dependency: a valid, unexpired key with ``scope`` (or admin); 401 without one, 403 without the scope."""

        async def check(authorization: str | None = Header(default=None, description="Bearer <API key>"),
                        svc: Service = Depends(service)) -> str:
            return await authorise(authorization, svc, scope)

        return check

    async def predict_guard(authorization: str | None = Header(default=None), svc: Service = Depends(service)) -> None:
        if svc.settings.require_key_for_predict:
            await authorise(authorization, svc, "predict")

    async def answer(svc: Service, coro) -> Any:
        """A prediction within ``serve.request_timeout_s`` (504 past it); shared work still fills the cache."""
        try:
            return await asyncio.wait_for(coro, svc.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(504, f"no answer within serve.request_timeout_s = {svc.settings.request_timeout_s:g} s; "
                                    "retry (the work goes on and a repeat may be served from the cache)") from None

    def error(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
        rid = request_id(request.scope)
        # the header too: a 500 is sent by Starlette's outermost middleware, outside RequestIdMiddleware
        return JSONResponse({"error": message, **extra, "request_id": rid}, status_code=status,
                            headers={"x-request-id": rid})

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(request, exc.status, exc.message)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError):
        # a value the database refuses (too long, too large, malformed): the client's 422, without the SQL
        log.warning("request %s: the database refused a value: %s", request_id(request.scope), exc.orig)
        if isinstance(exc, (DataError, IntegrityError)):
            return error(request, 422, "a value is too long, too large or malformed for the registry; shorten it")
        return error(request, 503, "the registry database is unavailable; retry in a moment")

    @app.exception_handler(Exception)
    async def last_resort(request: Request, exc: Exception):
        # anything unexpected: the details go to the log under the request id, never to the client
        log.exception("request %s failed", request_id(request.scope))
        return error(request, 500, "internal error; quote the request_id when you report it")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(request, 400, "the body is not valid JSON")
        parts = []
        details = []
        for e in errors:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}"[:500])
            details.append({"field": where, "message": e.get("msg"), "type": e.get("type")})
        return error(request, 422, "; ".join(parts), details=details)

    @app.exception_handler(TreumError)
    async def treum_error(request: Request, exc: TreumError):
        return error(request, error_status(exc), str(exc))

    def get_model(svc: Service, model_id: uuid.UUID) -> MLModel:
        return svc.registry.get_by_id(model_id)  # NotFoundError answers 404 through the handler above

    # health and models ------------------------------------------------------
    @app.get(f"{PREFIX}/health", tags=["monitoring"])
    async def health(detail: bool = Query(False, description="the detailed view (needs a key with 'read')"),
                     authorization: str | None = Header(default=None), svc: Service = Depends(service)) -> dict[str, Any]:
        """Open: whether the service answers and how many models are live. ``?detail=true`` needs a key."""
        if not detail:
            return {"status": "ok", "live_models": len(svc.live), "tasks_answered":
                    sum(1 for t in svc.plugins.specs("tasks") if svc.answering(t).get("model"))}
        await authorise(authorization, svc, "read")
        return svc.health()

    @app.get(f"{PREFIX}/models", tags=["models"], response_model=list[S.ModelOut])
    def list_models(name: str | None = None, _: str = Depends(require("read")), svc: Service = Depends(service)):
        return [_model_out(m) for m in svc.registry.list_models(name)]

    @app.get(f"{PREFIX}/models/{{model_id}}", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def model_detail(model_id: uuid.UUID, _: str = Depends(require("read")), svc: Service = Depends(service)):
        return clean_json(_model_out(get_model(svc, model_id), detail=True))

    @app.post(f"{PREFIX}/models", tags=["models"], response_model=S.ModelOut, status_code=201, responses=ERRORS)
    def register_model(body: S.RegisterRequest, actor: str = Depends(require("train")),
                       svc: Service = Depends(service)):
        spec = svc.plugins.model(body.name)
        path = upload_path(svc, body.artifact_path)
        try:
            manifest = verify_artifact(path)
            task_file = path / "task.json"
            saved_task = json.loads(task_file.read_text()) if task_file.is_file() else {}
            config = json.loads((path / "config.json").read_text())
        except ArtifactIntegrityError as exc:
            raise RequestError(422, public_artifact_error(exc)) from None
        except (ValueError, KeyError, OSError) as exc:  # malformed JSON, a missing file
            raise RequestError(422, f"the artifact is malformed ({type(exc).__name__}); save it with Model.save") from None
        if manifest.get("model") != spec.name:
            raise RequestError(422, f"the artifact was saved by model '{manifest.get('model')}', not '{spec.name}'")
        # the task it was saved for (task.json), else its task's defaults; served answers are that task's
        task = build_task(svc.plugins.task(spec.task), saved_task)  # ConfigError: 422
        m = svc.registry.register(
            name=spec.name, task=spec.task, family=spec.family,
            config=config, artifact_dir=path, metrics={}, performance={},
            baselines={}, validated=False, data_version="external",
            metadata={"source": "api", "reason": body.reason, "task_config": task.config_dict()},
            actor=f"api:{actor}",
        )
        return _model_out(m, detail=True)

    @app.put(f"{PREFIX}/models/{{model_id}}/deploy", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def deploy_model(model_id: uuid.UUID, body: S.DeployRequest, actor: str = Depends(require("deploy")),
                     svc: Service = Depends(service)):
        m = get_model(svc, model_id)
        out = svc.registry.deploy(m.model_name, m.model_version, f"api:{actor}", body.reason, body.force)
        svc.refresh()
        return _model_out(out)

    @app.put(f"{PREFIX}/models/{{model_id}}/retire", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def retire_model(model_id: uuid.UUID, body: S.RetireRequest, actor: str = Depends(require("deploy")),
                     svc: Service = Depends(service)):
        m = get_model(svc, model_id)
        out = svc.registry.retire(m.model_name, m.model_version, f"api:{actor}", body.reason)
        svc.refresh()
        return _model_out(out)

    @app.get(f"{PREFIX}/models/{{model_id}}/performance", tags=["models"], responses=ERRORS)
    def model_performance(model_id: uuid.UUID, _: str = Depends(require("read")),
                          svc: Service = Depends(service)) -> dict[str, Any]:
        m = get_model(svc, model_id)
        rows = svc.registry.performance(m.id)
        return clean_json({
            "model": _model_out(m, detail=True),
            "metrics": [{c.name: getattr(r, c.name) for c in r.__table__.columns if c.name != "model_id"} for r in rows],
        })

    @app.get(f"{PREFIX}/models/{{model_id}}/predictions", tags=["models"], responses=ERRORS)
    def model_predictions(model_id: uuid.UUID, limit: int = Query(50, ge=1, le=1000),
                          _: str = Depends(require("read")), svc: Service = Depends(service)) -> list[dict[str, Any]]:
        get_model(svc, model_id)
        return [clean_json({"prediction_id": r.prediction_id, "entity_id": r.entity_id, "created_at": str(r.created_at),
                            "task": (r.input_features or {}).get("task"), "probability": r.prediction_probability,
                            "value": r.prediction_value, "class": r.prediction_class, "version": r.model_version,
                            "arm": r.experiment_arm, "actual_value": r.actual_value, "is_correct": r.is_correct,
                            "error": r.prediction_error})
                for r in svc.registry.predictions(model_id, limit)]

    # predictions ------------------------------------------------------------
    # a JSONResponse skips re-validating an answer against its response model: the hot path's biggest cost
    @app.post(f"{PREFIX}/predict/price", tags=["predict"], response_model=S.EnsembleOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_ensemble(body: S.PredictRequest, svc: Service = Depends(service)):
        """The ensemble (``serve.ensemble``): the regime's label picks the weights of the members' answers."""
        return JSONResponse(clean_json(await answer(svc, svc.predict("price", body.instrument, _bars(body),
                                                                     body.user_id))))

    @app.post(f"{PREFIX}/predict/batch", tags=["predict"], response_model=S.BatchOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_batch(body: S.BatchRequest, svc: Service = Depends(service)):
        """Several predictions of any tasks; each item gets its own status, a bad item does not fail the rest."""
        total = sum(len(item.bars or ()) for item in body.requests)
        if total > svc.settings.max_batch_bars:
            raise RequestError(413, f"the batch sends {total} bars in all; at most {svc.settings.max_batch_bars} are "
                                    "accepted (serve.max_batch_bars): split it")
        results = []
        deadline = time.monotonic() + svc.settings.request_timeout_s
        for item in body.requests:
            out: dict[str, Any] = {"task": item.task, "instrument": item.instrument}
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestError(504, "the batch ran out of serve.request_timeout_s before this item")
                out.update(status=200, result=clean_json(await asyncio.wait_for(
                    svc.predict(item.task, item.instrument, _bars(item), item.user_id), left)))
            except asyncio.TimeoutError:
                out.update(status=504, error="no answer within the batch's time (serve.request_timeout_s)")
            except RequestError as exc:
                out.update(status=exc.status, error=exc.message)
            except TreumError as exc:
                out.update(status=error_status(exc), error=str(exc))
            except Exception:  # one item's bug must not cost the others their answers
                log.exception("batch item %s/%s failed", item.task, item.instrument)
                out.update(status=500, error="internal error answering this item; the others are unaffected")
            results.append(out)
        return {"results": results}

    @app.post(f"{PREFIX}/predict/{{task}}", tags=["predict"], response_model=S.TaskOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_task(body: S.PredictRequest,
                           task: str = PathParam(description="a registered task (direction, volatility, ...) or an "
                                                             "alias of one (serve.aliases)"),
                           svc: Service = Depends(service)):
        """Any registered task with a deployed model, in the task's prediction columns.

        The model is ``serve.tasks.<task>.model`` if set, else the task's one deployed model;
        the specification's named routes (``volatility``, ``market-regime``) are aliases (``serve.aliases``).
        """
        return JSONResponse(clean_json(await answer(svc, svc.predict(task, body.instrument, _bars(body), body.user_id))))

    # outcomes and experiments ---------------------------------------------------
    @app.post(f"{PREFIX}/predictions/{{prediction_id}}/outcome", tags=["experiments"], responses=ERRORS)
    def record_outcome(prediction_id: str, body: S.OutcomeRequest, actor: str = Depends(require("experiments")),
                       svc: Service = Depends(service)) -> dict[str, Any]:
        """Record the realised outcome of a prediction; each row is scored by its own task."""
        updated = svc.record_outcome(prediction_id, body.actual_value, f"api:{actor}")
        return {"prediction_id": prediction_id, "updated": updated}

    @app.get(f"{PREFIX}/experiments", tags=["experiments"])
    def list_experiments(_: str = Depends(require("read")), svc: Service = Depends(service)) -> list[dict[str, Any]]:
        return [_experiment_out(e) for e in svc.registry.list_experiments()]

    @app.post(f"{PREFIX}/experiments", tags=["experiments"], status_code=201, responses=ERRORS)
    def create_experiment(body: S.ExperimentRequest, actor: str = Depends(require("experiments")),
                          svc: Service = Depends(service)) -> dict[str, Any]:
        exp = svc.registry.create_experiment(body.name, body.control_model_id, body.treatment_model_id,
                                             body.treatment_percent, body.description, body.days, f"api:{actor}")
        svc.refresh()
        return {"id": str(exp.id), "name": exp.experiment_name, "status": exp.status}

    @app.put(f"{PREFIX}/experiments/{{experiment_id}}/stop", tags=["experiments"], responses=ERRORS)
    def stop_experiment(experiment_id: uuid.UUID, actor: str = Depends(require("experiments")),
                        svc: Service = Depends(service)) -> dict[str, Any]:
        exp = svc.registry.stop_experiment(experiment_id, f"api:{actor}")
        svc.refresh()
        return {"id": str(exp.id), "status": exp.status}

    @app.get(f"{PREFIX}/experiments/{{experiment_id}}/results", tags=["experiments"], responses=ERRORS)
    def experiment_results(experiment_id: uuid.UUID, _: str = Depends(require("read")),
                           svc: Service = Depends(service)) -> dict[str, Any]:
        res = svc.registry.experiment_results(experiment_id)
        control, treatment = res["arms"]["control"], res["arms"]["treatment"]
        test = two_proportion_test(control["hits"], control["outcomes"], treatment["hits"], treatment["outcomes"])
        method = {"method": "two-proportion z-test on hit rates"}
        res["test"] = {**method, **test} if test["p_value"] is not None else {**method, "note": "no outcomes in one arm yet"}
        return clean_json(res)

    # monitoring ----------------------------------------------------------------
    @app.get(f"{PREFIX}/monitoring/performance", tags=["monitoring"])
    def monitoring_performance(hours: float = Query(24.0, gt=0, le=24 * 366,
                                                    description="the window of the latency figures, in hours"),
                               _: str = Depends(require("read")), svc: Service = Depends(service)) -> dict[str, Any]:
        from datetime import datetime, timedelta, timezone

        since = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=hours)
        out = {}
        for name, live in svc.live.items():
            latency = svc.registry.latency_summary(live.id, since)  # aggregated in SQL, not loaded
            n, with_outcome, hits = svc.registry.hit_rate(live.id)
            row = svc.registry.get_by_id(live.id)
            out[name] = {
                "version": live.version, "task": live.task_name, "predictions": n,
                "latency_window_hours": hours, "latency_n": latency["n"],
                "latency_ms_mean": latency["mean_ms"], "latency_ms_p95": latency["p95_ms"],
                "outcomes": with_outcome, "live_hit_rate": hits / with_outcome if with_outcome else None,
                "walk_forward": (row.custom_metrics or {}).get("walk_forward"),
            }
        return clean_json({"models": out, "cache": {"hits": svc.cache.hits, "misses": svc.cache.misses},
                           "logs_written": svc.log.written})

    from treum.serve.job_routes import add_job_routes

    add_job_routes(app, PREFIX, require, service)  # training jobs and searches, run on the Ray cluster

    from treum.serve.explain_routes import add_explain_routes

    # explanations of deployed models (/explain/...), behind 'read': they read a model and change nothing
    app.state.explainer = add_explain_routes(app, PREFIX, require, service)

    if plugins is not None:  # each behind its scope's key check, as the built-in routes are
        # a name /predict/{task} answers: a task or a built-in route (aliases are checked with the settings)
        # (a corpus task reads texts, not an instrument's bars: its plugin route answers it, not the template)
        answered = {n for n, t in plugins.specs("tasks").items() if t.data_kind == "panel"} | set(RESERVED_ROUTES)
        mount_plugin_routes(app, plugins, PREFIX, get_service,
                            lambda scope: predict_guard if scope == "predict" else require(scope),
                            taken=lambda value: value in answered)

    def limit() -> int | None:
        svc = get_service()
        return svc.settings.max_body_bytes if svc is not None else None

    def limiter():
        svc = get_service()
        return svc.limiter if svc is not None else None

    # outermost last: request id -> log -> rate limit -> body limit -> routes
    app.add_middleware(BodyLimitMiddleware, limit=limit)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, prefix=PREFIX)
    app.add_middleware(ServingLogMiddleware, get_service=get_service)
    app.add_middleware(RequestIdMiddleware)
    return app


def upload_path(svc: Service, artifact_path: str) -> Path:
    """The artifact folder of a register request: below ``serve.upload_root``, never a symlink, or a 422."""
    from treum.registry.store import treum_home

    root = Path(svc.settings.upload_root or treum_home() / "uploads").resolve()
    raw = Path(artifact_path)
    candidate = raw if raw.is_absolute() else root / raw
    resolved = candidate.resolve()
    if root != resolved and root not in resolved.parents:
        raise RequestError(422, "artifact_path must lie inside the server's upload folder (serve.upload_root); "
                                "copy the saved model there and give its path relative to that folder")
    if not resolved.is_dir():
        raise RequestError(422, "artifact_path is not a saved model folder inside the upload folder")
    for path in [candidate, *resolved.rglob("*")]:
        if path.is_symlink():
            raise RequestError(422, "the artifact folder holds a symbolic link; copy real files into it")
    return resolved


def public_artifact_error(exc: ArtifactIntegrityError) -> str:
    """What a client may know about a refused artifact: which file, never a path on the server or a hash."""
    import re

    text = str(exc)
    if "malformed" in text:
        return "the artifact's manifest is malformed; save the model again with Model.save"
    if "symbolic link" in text:
        return "the artifact folder holds a symbolic link; copy real files into it"
    named = re.search(r"file '([^']+)'", text)
    return ("the artifact does not match its manifest" + (f" (file '{Path(named.group(1)).name}')" if named else "")
            + "; save it again with Model.save")
