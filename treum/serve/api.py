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

from treum.core.errors import ArtifactIntegrityError, NotFoundError, PluginError, RegistryError, TreumError
from treum.core.model import verify_artifact
from treum.core.task import build_task
from treum.registry.schema import MLModel
from treum.registry.store import clean_json
from treum.serve import schemas as S
from treum.serve.ab import two_proportion_test
from treum.serve.bars import RequestError
from treum.serve.plugin_routes import mount_plugin_routes
from treum.serve.router import Service

log = logging.getLogger(__name__)

PREFIX = "/api/v1/ml"
ERRORS = {400: {"model": S.ErrorOut}, 401: {"model": S.ErrorOut}, 404: {"model": S.ErrorOut},
          409: {"model": S.ErrorOut}, 413: {"model": S.ErrorOut}, 422: {"model": S.ErrorOut},
          503: {"model": S.ErrorOut}}


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
    """The HTTP status of a treum error: unknown names 404, refused registry operations 409, bad values 422."""
    return 404 if isinstance(exc, (PluginError, NotFoundError)) else 409 if isinstance(exc, RegistryError) else 422


def _experiment_out(e) -> dict[str, Any]:
    return {"id": str(e.id), "name": e.experiment_name, "status": e.status,
            "control_model_id": str(e.control_model_id), "treatment_model_id": str(e.treatment_model_id),
            "traffic_allocation": e.traffic_allocation, "start_date": str(e.start_date), "end_date": str(e.end_date)}


class ServingLogMiddleware:
    """Logs every API request to ``model_serving_logs`` through the batch writer (pure ASGI: cheap)."""

    def __init__(self, app, get_service: Callable[[], Service]):
        self.app = app
        self.get_service = get_service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = {"status": 500, "bytes": 0}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            service = self.get_service()
            if service is not None:
                headers = dict(scope.get("headers") or [])
                client = scope.get("client")
                service.log_request(
                    scope["path"], uuid.uuid4().hex, started, state["status"], None,
                    int(headers.get(b"content-length", b"0") or 0), state["bytes"], client[0] if client else None,
                )


def create_app(get_service: Callable[[], Service], plugins: Any = None) -> FastAPI:
    """The API around the service that ``get_service()`` returns (None while it starts).

    With ``plugins``, the routes that plugins register (``treum_serve_routes``) are mounted
    under the API prefix; one that clashes with a built-in route is a PluginError here, at start-up.
    """
    app = FastAPI(
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

    def require_key(authorization: str | None = Header(default=None, description="Bearer <API key>"),
                    svc: Service = Depends(service)) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise RequestError(401, "this route needs an API key: send 'Authorization: Bearer <key>' "
                                    "(create one with `treum registry keys create NAME`)")
        key = svc.registry.check_api_key(authorization[7:].strip())
        if key is None:
            raise RequestError(401, "the API key is unknown or revoked")
        return key.name

    async def predict_guard(authorization: str | None = Header(default=None), svc: Service = Depends(service)) -> None:
        if svc.settings.require_key_for_predict:
            require_key(authorization, svc)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "the body is not valid JSON"}, status_code=400)
        parts = []
        details = []
        for e in errors:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}")
            details.append({"field": where, "message": e.get("msg"), "type": e.get("type")})
        return JSONResponse({"error": "; ".join(parts), "details": details}, status_code=422)

    @app.exception_handler(TreumError)
    async def treum_error(_: Request, exc: TreumError):
        return JSONResponse({"error": str(exc)}, status_code=error_status(exc))

    def get_model(svc: Service, model_id: uuid.UUID) -> MLModel:
        return svc.registry.get_by_id(model_id)  # NotFoundError answers 404 through the handler above

    # health and models ------------------------------------------------------
    @app.get(f"{PREFIX}/health", tags=["monitoring"])
    def health(svc: Service = Depends(service)) -> dict[str, Any]:
        return svc.health()

    @app.get(f"{PREFIX}/models", tags=["models"], response_model=list[S.ModelOut])
    def list_models(name: str | None = None, svc: Service = Depends(service)):
        return [_model_out(m) for m in svc.registry.list_models(name)]

    @app.get(f"{PREFIX}/models/{{model_id}}", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def model_detail(model_id: uuid.UUID, svc: Service = Depends(service)):
        return clean_json(_model_out(get_model(svc, model_id), detail=True))

    @app.post(f"{PREFIX}/models", tags=["models"], response_model=S.ModelOut, status_code=201, responses=ERRORS)
    def register_model(body: S.RegisterRequest, actor: str = Depends(require_key), svc: Service = Depends(service)):
        spec = svc.plugins.model(body.name)
        path = Path(body.artifact_path)
        if not path.is_dir():
            raise RequestError(422, f"artifact_path '{path}' is not a directory on the server")
        try:
            manifest = verify_artifact(path)
        except ArtifactIntegrityError as exc:
            raise RequestError(422, str(exc)) from None
        if manifest["model"] != spec.name:
            raise RequestError(422, f"the artifact was saved by model '{manifest['model']}', not '{spec.name}'")
        # the task it was saved for (task.json), else its task's defaults; served answers are that task's
        task_file = path / "task.json"
        task = build_task(svc.plugins.task(spec.task),
                          json.loads(task_file.read_text()) if task_file.is_file() else {})  # ConfigError: 422
        m = svc.registry.register(
            name=spec.name, task=spec.task, family=spec.family,
            config=json.loads((path / "config.json").read_text()), artifact_dir=path, metrics={}, performance={},
            baselines={}, validated=False, data_version="external",
            metadata={"source": "api", "reason": body.reason, "task_config": task.config_dict()},
            actor=f"api:{actor}",
        )
        return _model_out(m, detail=True)

    @app.put(f"{PREFIX}/models/{{model_id}}/deploy", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def deploy_model(model_id: uuid.UUID, body: S.DeployRequest, actor: str = Depends(require_key),
                     svc: Service = Depends(service)):
        m = get_model(svc, model_id)
        out = svc.registry.deploy(m.model_name, m.model_version, f"api:{actor}", body.reason, body.force)
        svc.refresh()
        return _model_out(out)

    @app.put(f"{PREFIX}/models/{{model_id}}/retire", tags=["models"], response_model=S.ModelOut, responses=ERRORS)
    def retire_model(model_id: uuid.UUID, body: S.RetireRequest, actor: str = Depends(require_key),
                     svc: Service = Depends(service)):
        m = get_model(svc, model_id)
        out = svc.registry.retire(m.model_name, m.model_version, f"api:{actor}", body.reason)
        svc.refresh()
        return _model_out(out)

    @app.get(f"{PREFIX}/models/{{model_id}}/performance", tags=["models"], responses=ERRORS)
    def model_performance(model_id: uuid.UUID, svc: Service = Depends(service)) -> dict[str, Any]:
        m = get_model(svc, model_id)
        rows = svc.registry.performance(m.id)
        return clean_json({
            "model": _model_out(m, detail=True),
            "metrics": [{c.name: getattr(r, c.name) for c in r.__table__.columns if c.name != "model_id"} for r in rows],
        })

    @app.get(f"{PREFIX}/models/{{model_id}}/predictions", tags=["models"], responses=ERRORS)
    def model_predictions(model_id: uuid.UUID, limit: int = Query(50, ge=1, le=1000),
                          svc: Service = Depends(service)) -> list[dict[str, Any]]:
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
    async def predict_price(body: S.PredictRequest, svc: Service = Depends(service)):
        """The ensemble (``serve.ensemble``): the regime's label picks the weights of the members' answers."""
        return JSONResponse(clean_json(await svc.predict("price", body.instrument, _bars(body), body.user_id)))

    @app.post(f"{PREFIX}/predict/batch", tags=["predict"], response_model=S.BatchOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_batch(body: S.BatchRequest, svc: Service = Depends(service)):
        """Several predictions of any tasks; each item gets its own status, a bad item does not fail the rest."""
        results = []
        for item in body.requests:
            out: dict[str, Any] = {"task": item.task, "instrument": item.instrument}
            try:
                out.update(status=200, result=clean_json(await svc.predict(item.task, item.instrument, _bars(item),
                                                                           item.user_id)))
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
        return JSONResponse(clean_json(await svc.predict(task, body.instrument, _bars(body), body.user_id)))

    # outcomes and experiments ---------------------------------------------------
    @app.post(f"{PREFIX}/predictions/{{prediction_id}}/outcome", tags=["experiments"], responses=ERRORS)
    def record_outcome(prediction_id: str, body: S.OutcomeRequest, actor: str = Depends(require_key),
                       svc: Service = Depends(service)) -> dict[str, Any]:
        """Record the realised outcome of a prediction; each row is scored by its own task."""
        updated = svc.record_outcome(prediction_id, body.actual_value, f"api:{actor}")
        return {"prediction_id": prediction_id, "updated": updated}

    @app.get(f"{PREFIX}/experiments", tags=["experiments"])
    def list_experiments(svc: Service = Depends(service)) -> list[dict[str, Any]]:
        return [_experiment_out(e) for e in svc.registry.list_experiments()]

    @app.post(f"{PREFIX}/experiments", tags=["experiments"], status_code=201, responses=ERRORS)
    def create_experiment(body: S.ExperimentRequest, actor: str = Depends(require_key),
                          svc: Service = Depends(service)) -> dict[str, Any]:
        exp = svc.registry.create_experiment(body.name, body.control_model_id, body.treatment_model_id,
                                             body.treatment_percent, body.description, body.days, f"api:{actor}")
        svc.refresh()
        return {"id": str(exp.id), "name": exp.experiment_name, "status": exp.status}

    @app.put(f"{PREFIX}/experiments/{{experiment_id}}/stop", tags=["experiments"], responses=ERRORS)
    def stop_experiment(experiment_id: uuid.UUID, actor: str = Depends(require_key),
                        svc: Service = Depends(service)) -> dict[str, Any]:
        exp = svc.registry.stop_experiment(experiment_id, f"api:{actor}")
        svc.refresh()
        return {"id": str(exp.id), "status": exp.status}

    @app.get(f"{PREFIX}/experiments/{{experiment_id}}/results", tags=["experiments"], responses=ERRORS)
    def experiment_results(experiment_id: uuid.UUID, svc: Service = Depends(service)) -> dict[str, Any]:
        res = svc.registry.experiment_results(experiment_id)
        control, treatment = res["arms"]["control"], res["arms"]["treatment"]
        test = two_proportion_test(control["hits"], control["outcomes"], treatment["hits"], treatment["outcomes"])
        method = {"method": "two-proportion z-test on hit rates"}
        res["test"] = {**method, **test} if test["p_value"] is not None else {**method, "note": "no outcomes in one arm yet"}
        return clean_json(res)

    # monitoring ----------------------------------------------------------------
    @app.get(f"{PREFIX}/monitoring/performance", tags=["monitoring"])
    def monitoring_performance(svc: Service = Depends(service)) -> dict[str, Any]:
        out = {}
        for name, live in svc.live.items():
            times = svc.registry.inference_times(live.id)
            n, with_outcome, hits = svc.registry.hit_rate(live.id)
            row = svc.registry.get_by_id(live.id)
            out[name] = {
                "version": live.version, "task": live.task_name, "predictions": n,
                "latency_ms_mean": (sum(times) / len(times)) if times else None,
                "latency_ms_p95": times[int(0.95 * (len(times) - 1))] if times else None,
                "outcomes": with_outcome, "live_hit_rate": hits / with_outcome if with_outcome else None,
                "walk_forward": (row.custom_metrics or {}).get("walk_forward"),
            }
        return clean_json({"models": out, "cache": {"hits": svc.cache.hits, "misses": svc.cache.misses},
                           "logs_written": svc.log.written})

    if plugins is not None:
        mount_plugin_routes(app, plugins, PREFIX, get_service)
    app.add_middleware(ServingLogMiddleware, get_service=get_service)
    return app
