"""Training jobs and hyper-parameter searches over HTTP, run as Ray actors on the cluster that serves.

- ``POST /training/jobs`` starts a ``train``, ``evaluate`` or ``tune`` run (202, the job's id);
- ``GET /training/jobs`` lists jobs, ``GET /training/jobs/{id}`` shows one (a search with its trials);
- ``POST /training/jobs/{id}/cancel`` cancels one: its row (and a search's trial rows) end cancelled
  and its actor is killed, with the trials it started;
- ``POST /optimization/hyperparameters`` starts a search, ``GET /optimization/results`` lists
  searches with their best trial.

Every route needs a key with the ``train`` scope. A request is validated and composed before
its row is queued (a bad override is a 422 naming it). Each job runs in a detached actor named
``treum-job-<id>`` (namespace ``treum-jobs``), so any replica can cancel it. The runs themselves
are the CLI's (``treum.commands.jobs``, imported by name when a request arrives).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import uuid
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query
from pydantic import Field

from treum.core.errors import TreumError
from treum.registry.jobs import job_dict
from treum.serve.bars import RequestError
from treum.serve.schemas import Strict

NAMESPACE = "treum-jobs"
JOBS_MODULE = "treum.commands.jobs"  # the CLI's runs; the serving layer reaches them by name
JOB_TYPES = {"train": "training", "evaluate": "evaluation", "tune": "tuning"}
NAME = r"^[A-Za-z0-9_\-]{1,100}$"


class JobRequest(Strict):
    command: Literal["train", "evaluate", "tune"] = Field("train", description="train registers; evaluate does not; "
                                                                               "tune searches, then trains the best")
    model: str = Field(pattern=NAME, description="a model's name (GET /models lists the registered ones)")
    data: str | None = Field(None, pattern=NAME, description="a data set's name (default: the root config's)")
    hpo: str | None = Field(None, pattern=NAME, description="tune: a search in conf/hpo (default: the model's own)")
    overrides: list[str] = Field(default_factory=list, max_length=50,
                                 description="Hydra overrides as on the command line: model.*, features.*, task.*, "
                                             "eval.*, hpo.*, seed, zoo, experiment")


class SearchRequest(Strict):
    model: str = Field(pattern=NAME)
    data: str | None = Field(None, pattern=NAME)
    hpo: str | None = Field(None, pattern=NAME, description="a search in conf/hpo (default: the model's own)")
    overrides: list[str] = Field(default_factory=list, max_length=50, description="e.g. hpo.num_samples=8")


class CancelRequest(Strict):
    reason: str | None = Field(None, max_length=500)


def _search_out(reg, job) -> dict[str, Any]:
    """A search with its best trial: the one it chose when it ended, else the best full trial so far."""
    summary = job.final_metrics or {}
    trials = reg.jobs(1000, search=job.id)
    best = None
    if summary.get("best_trial_job"):
        best = next((t for t in trials if str(t.id) == summary["best_trial_job"]), None)
    else:
        # the objective and its direction: the search's row says them, or (a search started over HTTP) its trials'
        said = job.training_config if "objective" in (job.training_config or {}) else \
            (trials[0].training_config if trials else {}) or {}
        metric, higher = said.get("objective"), said.get("mode", "max") == "max"
        done = [t for t in trials if (t.final_metrics or {}).get(metric) is not None
                and not (t.final_metrics or {}).get("stopped_early") and t.status == "completed"]
        if done and metric:
            best = (max if higher else min)(done, key=lambda t: t.final_metrics[metric])
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return {
        "search": job_dict(job, brief=True), "hpo": (job.training_config or {}).get("hpo"),
        "model": (job.model_config or {}).get("name"), "data": (job.dataset_config or {}).get("name"),
        "trials": len(trials), "trial_status": counts,
        "best_trial": None if best is None else {
            "job": str(best.id), "trial": (best.training_config or {}).get("trial"),
            "params": (best.training_config or {}).get("params"), "metrics": best.final_metrics},
        "registered": summary.get("registered"),
    }


def _actor_class():
    import ray

    @ray.remote(max_restarts=0, max_task_retries=0)
    class JobRunner:
        """Runs one queued job to its end, then leaves."""

        def run(self, job_id: str, command: str, overrides: list[str], actor: str, env: dict[str, str]) -> None:
            try:
                importlib.import_module(JOBS_MODULE).execute(job_id, command, overrides, actor, env)
            finally:
                ray.actor.exit_actor()

    return JobRunner


_RAY_LOCK = threading.Lock()


def _ensure_ray() -> None:
    """Ray on this machine when the API runs under plain uvicorn (a Ray Serve replica is connected already).

    Ray is started from a thread of its own that never ends: its processes get a parent-death
    signal tied to the thread that started them, and a request's worker thread may end any time.
    """
    import logging

    import ray

    if ray.is_initialized():
        return
    with _RAY_LOCK:
        if ray.is_initialized():
            return
        started, failed = threading.Event(), []

        def keep() -> None:
            try:
                quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
                try:  # a Ray this machine already runs (another worker of this server started it)
                    ray.init(address="auto", **quiet)
                except ConnectionError:
                    ray.init(include_dashboard=False, **quiet)
            except BaseException as exc:  # noqa: BLE001 - handed to the request that asked
                failed.append(exc)
            finally:
                started.set()
            threading.Event().wait()

        threading.Thread(target=keep, name="treum-ray", daemon=True).start()
        if not started.wait(180):
            raise TimeoutError("Ray did not start within 180 s")
        if failed:
            raise failed[0]


def _job_env() -> dict[str, str]:
    from treum.registry.store import treum_home

    env = {"TREUM_HOME": str(treum_home()), "HF_HUB_OFFLINE": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    for key in ("TREUM_PLUGINS_TOML", "TREUM_HYDRA_SEARCHPATH"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def submit(registry, job_id: str, command: str, overrides: list[str], actor: str) -> None:
    """Start the job's actor (detached, named after the job) on the cluster."""
    _ensure_ray()
    env = {**_job_env(), "TREUM_REGISTRY_URL": registry.url}
    runner = _actor_class().options(name=f"treum-job-{job_id}", namespace=NAMESPACE, lifetime="detached",
                                    num_cpus=0 if command == "tune" else 1)  # a search's trials hold its CPUs
    runner.remote().run.remote(job_id, command, overrides, actor, env)


def kill(job_id: str) -> bool:
    """Kill a job's actor (and the trials it started); False when it is not running anywhere."""
    import ray

    try:
        _ensure_ray()
    except Exception:  # no Ray to ask: the row is cancelled, and the run checks its row before it registers
        return False
    try:
        handle = ray.get_actor(f"treum-job-{job_id}", namespace=NAMESPACE)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True


def actor_alive(job_id: str) -> bool | None:
    """Whether the job's actor exists on the cluster this process is connected to (None: no Ray here to ask)."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        ray.get_actor(f"treum-job-{job_id}", namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def reconcile(registry, job):
    """A job started over HTTP whose actor is gone (killed, its node lost) while its row says it runs: failed.

    Only a ``running`` row: its actor moved it there, so the actor existed; a ``queued`` row's actor may not
    have been created yet (the route writes the row first).
    """
    if job.status != "running" or "requested_by" not in (job.training_config or {}):
        return job
    if actor_alive(str(job.id)) is not False:
        return job
    latest = registry.job(job.id)  # the actor may have ended the row just now, then exited
    if latest.status in ("queued", "running"):
        registry.abandon_job(job.id, "treum", "its Ray actor is gone (killed, or its node was lost) before it finished")
        latest = registry.job(job.id)
    return latest


def add_job_routes(app: FastAPI, prefix: str, require, service) -> None:
    """Mount the training-job and optimization routes (each behind the ``train`` scope)."""
    from treum.serve.api import ERRORS

    async def start(body: JobRequest, actor: str, svc) -> dict[str, Any]:
        jobs = importlib.import_module(JOBS_MODULE)
        try:
            overrides = await asyncio.to_thread(jobs.check_request, body.command, body.model, body.data, body.hpo,
                                                list(body.overrides))
        except TreumError as exc:  # a bad override, an unknown name, a space the model refuses
            raise RequestError(422, str(exc)) from None
        data = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), None) or "default"
        training = {"command": body.command, "overrides": overrides, "requested_by": actor}
        if body.command == "tune":
            training["role"] = "search"
            training["hpo"] = next((o.split("=", 1)[1] for o in overrides if o.startswith("hpo=")), None)
        job_id = svc.registry.create_job(f"api:{body.command}:{body.model}:{data}", JOB_TYPES[body.command],
                                         {"name": body.model}, training, {"name": data}, actor)
        try:
            await asyncio.to_thread(submit, svc.registry, str(job_id), body.command, overrides, actor)
        except Exception as exc:  # Ray could not start the actor: the row says so, nothing is left queued
            svc.registry.end_unstarted(job_id, "failed", f"could not start on the Ray cluster: {exc}")
            raise RequestError(503, f"the Ray cluster did not take the job: {type(exc).__name__}: {exc}") from None
        return {"id": str(job_id), "status": "queued", "command": body.command, "overrides": overrides,
                "status_url": f"{prefix}/training/jobs/{job_id}"}

    @app.post(f"{prefix}/training/jobs", tags=["training"], status_code=202, responses=ERRORS)
    async def start_job(body: JobRequest, actor: str = Depends(require("train")), svc=Depends(service)) -> dict[str, Any]:
        """Start a train, evaluate or tune run on the cluster; poll its status URL."""
        return await start(body, actor, svc)

    @app.get(f"{prefix}/training/jobs", tags=["training"], responses=ERRORS)
    def list_jobs(type: Literal["training", "evaluation", "tuning"] | None = Query(None),  # noqa: A002
                  status: Literal["queued", "running", "completed", "failed", "cancelled"] | None = Query(None),
                  search: uuid.UUID | None = Query(None, description="the trials of this search"),
                  limit: int = Query(50, ge=1, le=500),
                  _: str = Depends(require("train")), svc=Depends(service)) -> list[dict[str, Any]]:
        rows = svc.registry.jobs(limit, job_type=type, status=status, search=search)
        return [job_dict(reconcile(svc.registry, j), brief=True) for j in rows]

    @app.get(f"{prefix}/training/jobs/{{job_id}}", tags=["training"], responses=ERRORS)
    def show_job(job_id: uuid.UUID, _: str = Depends(require("train")), svc=Depends(service)) -> dict[str, Any]:
        job = reconcile(svc.registry, svc.registry.job(job_id))
        out = job_dict(job)
        if (job.training_config or {}).get("role") == "search":
            out["trials"] = [job_dict(t, brief=True) for t in svc.registry.jobs(1000, search=job.id)]
        return out

    @app.post(f"{prefix}/training/jobs/{{job_id}}/cancel", tags=["training"], responses=ERRORS)
    async def cancel_job(job_id: uuid.UUID, body: CancelRequest | None = None, actor: str = Depends(require("train")),
                         svc=Depends(service)) -> dict[str, Any]:
        """Cancel a queued or running job: its row (a search's trials too) ends cancelled, its actor is killed."""
        reason = (body.reason if body else None) or "cancelled over the API"
        job = await asyncio.to_thread(svc.registry.cancel_job, job_id, actor, reason)
        killed = await asyncio.to_thread(kill, str(job_id))
        return {**job_dict(job, brief=True), "actor_killed": killed}

    @app.post(f"{prefix}/optimization/hyperparameters", tags=["training"], status_code=202, responses=ERRORS)
    async def start_search(body: SearchRequest, actor: str = Depends(require("train")),
                           svc=Depends(service)) -> dict[str, Any]:
        """Start a hyper-parameter search (``treum tune``) on the cluster."""
        return await start(JobRequest(command="tune", model=body.model, data=body.data, hpo=body.hpo,
                                      overrides=body.overrides), actor, svc)

    @app.get(f"{prefix}/optimization/results", tags=["training"], responses=ERRORS)
    def search_results(limit: int = Query(20, ge=1, le=200), model: str | None = Query(None, pattern=NAME),
                       _: str = Depends(require("train")), svc=Depends(service)) -> list[dict[str, Any]]:
        """Searches, newest first, each with its best trial and what it registered."""
        rows = [j for j in svc.registry.jobs(2000, job_type="tuning")
                if (j.training_config or {}).get("role") == "search"
                and (model is None or (j.model_config or {}).get("name") == model)]
        return [_search_out(svc.registry, j) for j in rows[:limit]]
