"""A built-in plugin of serve routes: ``GET /api/v1/ml/tasks``, what ``/predict/<task>`` can answer.

It goes through the ``treum_serve_routes`` hook like a third-party plugin's routes
do, and shows how an endpoint reaches the service (``request.app.state.get_service()``).
Its scope is ``predict``: a client that may predict may discover what it can predict
(open unless ``serve.require_key_for_predict``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from treum.core.hookspecs import hookimpl
from treum.core.specs import ServeRouteSpec
from treum.core.task import build_task
from treum.serve.bars import RequestError


def list_tasks(request: Request) -> dict[str, Any]:
    """Every registered task: its prediction columns, the model that answers it (or why none does), its aliases."""
    service = request.app.state.get_service()
    if service is None:
        raise RequestError(503, "the service is starting; retry in a moment")
    out = {}
    for name, spec in service.plugins.specs("tasks").items():
        answering = service.answering(name)
        live = service.live.get(answering["model"]) if answering["model"] else None
        task = live.task if live is not None and live.task is not None else build_task(spec)
        out[name] = {"description": spec.description, "prediction_columns": list(task.prediction_columns()),
                     "input": "bars" if spec.data_kind == "panel" else "text",
                     "aliases": [a for a, alias in service.settings.aliases.items() if alias.task == name],
                     **answering}
    ensemble = service.settings.ensemble
    return {"tasks": out, "ensemble": {"route": "price", "task": ensemble.task} if ensemble else None}


@hookimpl
def treum_serve_routes() -> list[ServeRouteSpec]:
    # a predicting client discovers what it can ask: open unless serve.require_key_for_predict, as /predict is
    return [ServeRouteSpec("tasks", "/tasks", list_tasks, ("GET",), scope="predict")]
