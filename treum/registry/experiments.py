"""A/B experiments between two versions of one model name.

An experiment splits the traffic of a name between a control and a treatment
version while it is ``running``; at most one runs per name. Results count the
predictions, outcomes and hits each arm logged; the significance test lives with
the serving layer (``treum.serve.ab``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treum.core.errors import NotFoundError, RegistryError
from treum.registry import audit
from treum.registry.outcomes import hit_counts
from treum.registry.schema import MLModel, ModelExperiment, utcnow
from treum.registry.values import as_uuid

ARMS = ("control", "treatment")


def _model(s: Session, model_id: uuid.UUID | str) -> MLModel:
    model = s.get(MLModel, as_uuid(model_id, "registered model"))
    if model is None:
        raise NotFoundError(f"no registered model with id {model_id} (treum registry list)")
    return model


def get(s: Session, experiment_id: uuid.UUID | str) -> ModelExperiment:
    exp = s.get(ModelExperiment, as_uuid(experiment_id, "experiment"))
    if exp is None:
        raise NotFoundError(f"no experiment with id {experiment_id}")
    return exp


def create(s: Session, name: str, control_id: uuid.UUID | str, treatment_id: uuid.UUID | str,
           treatment_percent: float, description: str | None, days: int, actor: str) -> ModelExperiment:
    """Start an experiment; see ``Registry.create_experiment``."""
    if not name or not name.strip():
        raise RegistryError("an experiment needs a name")
    if not 0 < float(treatment_percent) < 100:
        raise RegistryError(f"treatment_percent must be between 0 and 100 (exclusive), got {treatment_percent}")
    if int(days) < 1:
        raise RegistryError(f"an experiment runs for at least 1 day, got {days}")
    # taken before the check for a running experiment, so two creations on one name cannot both pass it
    audit.lock(s)
    control, treatment = _model(s, control_id), _model(s, treatment_id)
    if control.model_name != treatment.model_name:
        raise RegistryError(
            f"an experiment compares two versions of one model; got '{control.model_name}' and "
            f"'{treatment.model_name}'"
        )
    if control.id == treatment.id:
        raise RegistryError(
            f"control and treatment are the same version ({control.model_name} v{control.model_version}); "
            "pick two versions"
        )
    for m in (control, treatment):
        if m.deployment_status == "retired":
            raise RegistryError(f"{m.model_name} v{m.model_version} is retired and cannot take part in an experiment")
    running = s.execute(select(ModelExperiment).where(ModelExperiment.status == "running")).scalars()
    for other in running:
        arms = (s.get(MLModel, other.control_model_id), s.get(MLModel, other.treatment_model_id))
        if control.model_name in {m.model_name for m in arms if m is not None}:
            raise RegistryError(
                f"experiment '{other.experiment_name}' ({other.id}) already splits '{control.model_name}'; "
                "stop it first"
            )
    now = utcnow()
    pct = float(treatment_percent)
    exp = ModelExperiment(
        experiment_name=name,
        experiment_description=description,
        control_model_id=control.id,
        treatment_model_id=treatment.id,
        traffic_allocation={"control": 100 - pct, "treatment": pct},
        success_metrics=["hit_rate"],
        start_date=now,
        end_date=now + timedelta(days=int(days)),
        status="running",
    )
    s.add(exp)
    s.flush()
    audit.append(s, actor, "experiment.create", "model_experiments", exp.id,
                 {"name": name, "model": control.model_name, "control": str(control.id),
                  "treatment": str(treatment.id), "treatment_percent": pct, "days": int(days)})
    return exp


def stop(s: Session, experiment_id: uuid.UUID | str, actor: str) -> ModelExperiment:
    """Stop a running experiment; stopping one that is not running is refused."""
    exp = get(s, experiment_id)
    if exp.status != "running":
        raise RegistryError(f"experiment '{exp.experiment_name}' ({exp.id}) is '{exp.status}', not running")
    exp.status = "stopped"
    audit.append(s, actor, "experiment.stop", "model_experiments", exp.id, {"name": exp.experiment_name})
    return exp


def listing(s: Session, status: str | None = None) -> list[ModelExperiment]:
    q = select(ModelExperiment).order_by(ModelExperiment.created_at)
    if status is not None:
        q = q.where(ModelExperiment.status == status)
    return list(s.execute(q).scalars())


def results(s: Session, experiment_id: uuid.UUID | str) -> dict[str, Any]:
    """Per arm: the model, its predictions, those with an outcome, the hits and the hit rate."""
    exp = get(s, experiment_id)
    arms = {}
    for arm, model_id in zip(ARMS, (exp.control_model_id, exp.treatment_model_id)):
        n, with_outcome, hits = hit_counts(s, model_id, arm) if model_id is not None else (0, 0, 0)
        arms[arm] = {"model_id": str(model_id), "predictions": n, "outcomes": with_outcome, "hits": hits,
                     "hit_rate": hits / with_outcome if with_outcome else None}
    return {"id": str(exp.id), "name": exp.experiment_name, "status": exp.status, "arms": arms}
