"""The FastAPI application of ``treum serve``: the specification's ``/api/v1/ml`` routes.

``create_app(service_factory)`` builds it around a ``Service``; Ray Serve wraps
the same app (``treum.serve.ray_app``) and the benchmark serves it with plain
uvicorn for comparison. Every error is a 4xx (or a 503 when the ensemble cannot
answer) with a message that says what to fix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Integer, cast, func, select

from treum.core.errors import ArtifactIntegrityError, NotFoundError, PluginError, RegistryError, TreumError
from treum.core.model import verify_artifact
from treum.registry import audit
from treum.registry.schema import MLModel, MLPrediction, ModelExperiment, utcnow
from treum.registry.store import clean_json
from treum.serve import schemas as S
from treum.serve.ab import two_proportion_test
from treum.serve.bars import RequestError
from treum.serve.router import Service

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


def _outcomes(s, *where) -> tuple[int, int, int]:
    """(predictions, those with an outcome, correct ones) among the logged predictions matching ``where``."""
    n, with_outcome, hits = s.execute(
        select(func.count(), func.count(MLPrediction.is_correct), func.sum(cast(MLPrediction.is_correct, Integer)))
        .where(*where)
    ).one()
    return int(n), int(with_outcome), int(hits or 0)


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


def create_app(get_service: Callable[[], Service]) -> FastAPI:
    app = FastAPI(
        title="treum",
        version="0.1.0",
        description="Predictions from the models the treum registry says are deployed, combined per market regime.",
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
        status = 404 if isinstance(exc, (PluginError, NotFoundError)) else 409 if isinstance(exc, RegistryError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

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
        m = svc.registry.register(
            name=spec.name, task=spec.task, family=spec.family,
            config=json.loads((path / "config.json").read_text()), artifact_dir=path, metrics={}, baselines={},
            validated=False, data_version="external", metadata={"source": "api", "reason": body.reason},
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
        with svc.registry.sessions() as s:
            rows = s.execute(select(MLPrediction).where(MLPrediction.model_id == model_id)
                             .order_by(MLPrediction.created_at.desc()).limit(limit)).scalars()
            return [clean_json({"prediction_id": r.prediction_id, "entity_id": r.entity_id, "created_at": str(r.created_at),
                             "probability": r.prediction_probability, "value": r.prediction_value,
                             "class": r.prediction_class, "version": r.model_version, "arm": r.experiment_arm,
                             "actual_value": r.actual_value, "is_correct": r.is_correct}) for r in rows]

    # predictions ------------------------------------------------------------
    @app.post(f"{PREFIX}/predict/price", tags=["predict"], response_model=S.PriceOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_price(body: S.PredictRequest, svc: Service = Depends(service)):
        bars = _bars(body)
        # a JSONResponse skips re-validating the answer against PriceOut: the hot path's biggest cost
        return JSONResponse(clean_json(await svc.predict_price(body.instrument, bars, body.user_id)))

    @app.post(f"{PREFIX}/predict/volatility", tags=["predict"], response_model=S.VolatilityOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_volatility(body: S.PredictRequest, svc: Service = Depends(service)):
        bars = _bars(body)
        return await svc.predict_volatility(body.instrument, bars)

    @app.post(f"{PREFIX}/predict/market-regime", tags=["predict"], response_model=S.MarketRegimeOut,
              responses=ERRORS, dependencies=[Depends(predict_guard)])
    async def predict_regime(body: S.PredictRequest, svc: Service = Depends(service)):
        bars = _bars(body)
        return await svc.predict_regime(body.instrument, bars)

    @app.post(f"{PREFIX}/predict/batch", tags=["predict"], response_model=S.BatchOut, responses=ERRORS,
              dependencies=[Depends(predict_guard)])
    async def predict_batch(body: S.BatchRequest, svc: Service = Depends(service)):
        results = []
        for item in body.requests:
            bars = _bars(item)
            try:
                if item.kind == "price":
                    result = await svc.predict_price(item.instrument, bars, item.user_id)
                elif item.kind == "volatility":
                    result = await svc.predict_volatility(item.instrument, bars)
                else:
                    result = await svc.predict_regime(item.instrument, bars)
                results.append({"kind": item.kind, "instrument": item.instrument, "status": 200, "result": clean_json(result)})
            except RequestError as exc:
                results.append({"kind": item.kind, "instrument": item.instrument, "status": exc.status, "error": exc.message})
        return {"results": results}

    # outcomes and experiments ---------------------------------------------------
    @app.post(f"{PREFIX}/predictions/{{prediction_id}}/outcome", tags=["experiments"], responses=ERRORS)
    def record_outcome(prediction_id: str, body: S.OutcomeRequest, actor: str = Depends(require_key),
                       svc: Service = Depends(service)) -> dict[str, Any]:
        with svc.registry.transaction() as s:
            rows = list(s.execute(select(MLPrediction).where(
                (MLPrediction.prediction_id == prediction_id) | MLPrediction.prediction_id.like(f"{prediction_id}:%")
            )).scalars())
            if not rows:
                raise RequestError(404, f"no logged prediction '{prediction_id}' (logs are written within "
                                        f"{svc.settings.log_flush_seconds:g} s of the answer; retry)")
            for r in rows:
                r.actual_value = body.actual_value
                if r.prediction_probability is not None:
                    r.is_correct = (r.prediction_probability > 0.5) == (body.actual_value > 0)
                    r.prediction_error = float(r.prediction_probability - (1.0 if body.actual_value > 0 else 0.0))
            audit.append(s, f"api:{actor}", "prediction.outcome", "ml_predictions", prediction_id,
                         {"actual_value": body.actual_value, "rows": len(rows)})
        return {"prediction_id": prediction_id, "updated": len(rows)}

    @app.get(f"{PREFIX}/experiments", tags=["experiments"])
    def list_experiments(svc: Service = Depends(service)) -> list[dict[str, Any]]:
        with svc.registry.sessions() as s:
            return [{"id": str(e.id), "name": e.experiment_name, "status": e.status,
                     "control_model_id": str(e.control_model_id), "treatment_model_id": str(e.treatment_model_id),
                     "traffic_allocation": e.traffic_allocation, "start_date": str(e.start_date),
                     "end_date": str(e.end_date)} for e in s.execute(select(ModelExperiment)).scalars()]

    @app.post(f"{PREFIX}/experiments", tags=["experiments"], status_code=201, responses=ERRORS)
    def create_experiment(body: S.ExperimentRequest, actor: str = Depends(require_key),
                          svc: Service = Depends(service)) -> dict[str, Any]:
        control, treatment = get_model(svc, body.control_model_id), get_model(svc, body.treatment_model_id)
        if control.model_name != treatment.model_name:
            raise RequestError(422, f"an experiment compares two versions of one model; got '{control.model_name}' "
                                    f"and '{treatment.model_name}'")
        if control.id == treatment.id:
            raise RequestError(422, "control and treatment are the same version")
        for m in (control, treatment):
            if m.deployment_status == "retired":
                raise RequestError(409, f"{m.model_name} v{m.model_version} is retired")
        with svc.registry.transaction() as s:
            running = s.execute(select(ModelExperiment).where(ModelExperiment.status == "running")).scalars()
            for e in running:
                other = s.get(MLModel, e.control_model_id)
                if other is not None and other.model_name == control.model_name:
                    raise RequestError(409, f"experiment '{e.experiment_name}' already splits '{control.model_name}'; stop it first")
            now = utcnow()
            exp = ModelExperiment(
                experiment_name=body.name, experiment_description=body.description, control_model_id=control.id,
                treatment_model_id=treatment.id,
                traffic_allocation={"control": 100 - body.treatment_percent, "treatment": body.treatment_percent},
                success_metrics=["hit_rate"], start_date=now, end_date=now + timedelta(days=body.days), status="running",
            )
            s.add(exp)
            s.flush()
            audit.append(s, f"api:{actor}", "experiment.create", "model_experiments", exp.id,
                         {"name": body.name, "control": str(control.id), "treatment": str(treatment.id),
                          "treatment_percent": body.treatment_percent})
            exp_id = str(exp.id)
        svc.refresh()
        return {"id": exp_id, "name": body.name, "status": "running"}

    @app.put(f"{PREFIX}/experiments/{{experiment_id}}/stop", tags=["experiments"], responses=ERRORS)
    def stop_experiment(experiment_id: uuid.UUID, actor: str = Depends(require_key),
                        svc: Service = Depends(service)) -> dict[str, Any]:
        with svc.registry.transaction() as s:
            exp = s.get(ModelExperiment, experiment_id)
            if exp is None:
                raise RequestError(404, f"no experiment {experiment_id}")
            exp.status = "stopped"
            audit.append(s, f"api:{actor}", "experiment.stop", "model_experiments", exp.id, {})
        svc.refresh()
        return {"id": str(experiment_id), "status": "stopped"}

    @app.get(f"{PREFIX}/experiments/{{experiment_id}}/results", tags=["experiments"], responses=ERRORS)
    def experiment_results(experiment_id: uuid.UUID, svc: Service = Depends(service)) -> dict[str, Any]:
        with svc.registry.sessions() as s:
            exp = s.get(ModelExperiment, experiment_id)
            if exp is None:
                raise RequestError(404, f"no experiment {experiment_id}")
            arms = {}
            for arm, model_id in (("control", exp.control_model_id), ("treatment", exp.treatment_model_id)):
                n, with_outcome, hits = _outcomes(s, MLPrediction.model_id == model_id, MLPrediction.experiment_arm == arm)
                arms[arm] = {"model_id": str(model_id), "predictions": n, "outcomes": with_outcome, "hits": hits,
                             "hit_rate": hits / with_outcome if with_outcome else None}
        test = two_proportion_test(arms["control"]["hits"], arms["control"]["outcomes"],
                                   arms["treatment"]["hits"], arms["treatment"]["outcomes"])
        return clean_json({"id": str(experiment_id), "name": exp.experiment_name, "status": exp.status, "arms": arms,
                        "test": {"method": "two-proportion z-test on hit rates", **test} if test["p_value"] is not None
                        else {"method": "two-proportion z-test on hit rates", "note": "no outcomes in one arm yet"}})

    # monitoring ----------------------------------------------------------------
    @app.get(f"{PREFIX}/monitoring/performance", tags=["monitoring"])
    def monitoring_performance(svc: Service = Depends(service)) -> dict[str, Any]:
        out = {}
        with svc.registry.sessions() as s:
            for name, live in svc.live.items():
                mid = uuid.UUID(live.id)
                times = [t for (t,) in s.execute(select(MLPrediction.inference_time_ms).where(
                    MLPrediction.model_id == mid, MLPrediction.inference_time_ms.is_not(None)))]
                n, with_outcome, hits = _outcomes(s, MLPrediction.model_id == mid)
                row = s.get(MLModel, mid)
                times.sort()
                out[name] = {
                    "version": live.version, "predictions": n,
                    "latency_ms_mean": (sum(times) / len(times)) if times else None,
                    "latency_ms_p95": times[int(0.95 * (len(times) - 1))] if times else None,
                    "outcomes": with_outcome, "live_hit_rate": hits / with_outcome if with_outcome else None,
                    "walk_forward": (row.custom_metrics or {}).get("walk_forward") if row else None,
                }
        return clean_json({"models": out, "cache": {"hits": svc.cache.hits, "misses": svc.cache.misses},
                        "logs_written": svc.log.written})

    app.add_middleware(ServingLogMiddleware, get_service=get_service)
    return app
