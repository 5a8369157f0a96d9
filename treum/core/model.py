"""The model contract and the artifact format every model shares.

A model is built from its validated config alone, learns in ``fit``, answers in
``predict`` with a frame indexed like its input, and saves into a directory:
``config.json``, its native weights (written by ``save_weights``) and
``manifest.json`` with the SHA-256 of every file. ``load_model`` refuses a
directory whose files do not match their manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from treum.core.errors import ArtifactIntegrityError, TreumError
from treum.core.specs import ModelSpec

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


# inside a registered artifact: the walk-forward's out-of-sample predictions with their labels
OOS_FILE = "evaluation/oos.parquet"

def feature_columns(data: pd.DataFrame) -> list[str]:
    """The feature columns of a frame (a feature set names its columns ``f_*``)."""
    return [c for c in data.columns if c.startswith("f_")]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Model:
    """Base class of treum models. Subclasses set ``spec`` and implement the four methods.

    ``fit(data, valid=None)`` takes frames indexed by (timestamp, entity) that carry
    raw columns, ``f_*`` feature columns and the task's ``target*`` label columns;
    ``valid`` (if any) is a later block for early stopping, never the test period.
    The base class makes ``fit`` return the model and sets ``fitted``.
    ``predict(data)`` returns the task's prediction columns for every row of ``data``
    (a sequential model uses the earlier rows of ``data`` as context only).
    ``self.task`` is the task the model is fitted for (its config, e.g. horizons), set
    by ``build_model`` and restored by ``load_model``.
    """

    spec: ClassVar[ModelSpec]

    def __init__(self, config: Any):
        self.config = config
        self.fitted = False
        self.task: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fit = cls.fit  # the resolved method: the class's own, a mixin's, or an inherited one
        if getattr(fit, "_treum_wrapped", False):
            return

        @functools.wraps(fit)
        def wrapped(self, data, valid=None, *args, **kwargs):
            fit(self, data, valid, *args, **kwargs)
            self.fitted = True
            return self

        wrapped._treum_wrapped = True  # type: ignore[attr-defined]
        cls.fit = wrapped  # type: ignore[method-assign]

    # the contract -------------------------------------------------------
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> "Model":
        raise NotImplementedError

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def save_weights(self, directory: Path) -> None:
        """Write native weights into ``directory`` (never pickle)."""
        raise NotImplementedError

    def load_weights(self, directory: Path) -> None:
        raise NotImplementedError

    def predict_from(self, data: pd.DataFrame, start: Any) -> pd.DataFrame:
        """Predictions of which only the rows at or after ``start`` are used (the walk-forward's test block).

        The rows before ``start`` are context. The default predicts every row; a model whose
        answers are costly per date (an optimisation per rebalance date) overrides it to
        compute only from ``start``, giving the same answers there as ``predict``.
        """
        return self.predict(data)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        """The prediction for the last row of ``data`` (one entity), which serving asks for.

        The default predicts every row and keeps the last; a model whose answer needs only
        the tail of the data (a window) overrides it to skip the rest.
        """
        return self.predict(data).iloc[-1]

    def run_files(self, directory: Path, data: pd.DataFrame, rows: pd.DataFrame) -> list[Path]:
        """Files a person reads beside the leaderboard (a sheet of sample inputs with labels and predictions).

        Called once per run with the last walk-forward fold's fitted model: ``data`` is what
        ``predict`` saw (no labels) up to the end of that fold's test block, ``rows`` that block's
        rows with the label columns and this model's prediction columns joined. Write into
        ``directory`` (created by the caller) and return the paths; the default writes nothing.
        """
        return []

    # helpers for subclasses -----------------------------------------------
    @staticmethod
    def join_valid(data: pd.DataFrame, valid: pd.DataFrame | None) -> pd.DataFrame:
        """Training and validation rows as one frame, in time order (for models without early stopping)."""
        return data if valid is None or len(valid) == 0 else pd.concat([data, valid]).sort_index()

    def require_task(self) -> Any:
        if self.task is None:
            raise TreumError(
                f"model '{self.spec.name}' reads its task's config (e.g. horizons) but was built without one; "
                "build it with treum.core.model.build_model(spec, config, task)"
            )
        return self.task

    # shared -------------------------------------------------------------
    def feature_importance(self) -> pd.Series:
        raise NotImplementedError(f"model '{self.spec.name}' has no native feature importance")

    def save(self, directory: str | Path) -> Path:
        """Save config, weights and a manifest of hashes; returns the directory."""
        if not self.fitted:
            raise RuntimeError(f"model '{self.spec.name}' is not fitted; call fit() before save()")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(
            json.dumps(dataclasses.asdict(self.config), indent=2, sort_keys=True, default=str)
        )
        self.save_weights(directory)
        if self.task is not None:
            (directory / "task.json").write_text(json.dumps(self.task.config_dict(), indent=2, sort_keys=True))
        files = {
            str(p.relative_to(directory)): file_sha256(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        manifest = {
            "format": FORMAT_VERSION,
            "model": self.spec.name,
            "family": self.spec.family,
            "task": self.spec.task,
            "files": files,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return directory


def manifest_digest(directory: Path) -> str:
    """The content address of a saved model: SHA-256 of its manifest."""
    return file_sha256(Path(directory) / MANIFEST)


def verify_artifact(directory: str | Path) -> dict:
    """Check every file against the manifest; return the manifest or raise ``ArtifactIntegrityError``."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactIntegrityError(f"{directory}: no {MANIFEST}; this is not a saved treum model")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactIntegrityError(f"{directory}: {MANIFEST} is malformed ({exc}); save the model again") from None
    for name, digest in files.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise ArtifactIntegrityError(f"{directory}: the manifest names '{name}', which is not a file inside the "
                                         "artifact folder; refusing it")
        file = directory / name
        if file.is_symlink():
            raise ArtifactIntegrityError(f"{directory}: file '{name}' is a symbolic link; artifacts hold real files")
        if not file.is_file():
            raise ArtifactIntegrityError(f"{directory}: file '{name}' listed in the manifest is missing")
        actual = file_sha256(file)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"{directory}: file '{name}' has SHA-256 {actual[:12]}..., the manifest says {digest[:12]}...; "
                "the artifact was changed after it was saved, refusing to load it"
            )
    extra = {
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    } - set(manifest["files"])
    if extra:
        raise ArtifactIntegrityError(f"{directory}: files not in the manifest: {sorted(extra)}")
    return manifest


def build_model(spec: ModelSpec, config: Any, task: Any = None) -> Model:
    """An unfitted model of ``spec`` for ``task`` (a ``treum.core.task.Task``)."""
    model = spec.factory(config)
    model.task = task
    return model


def load_model(directory: str | Path, models: Mapping[str, ModelSpec], tasks: Mapping[str, Any] | None = None) -> Model:
    """Load a saved model after verifying its hashes; ``models`` and ``tasks`` map names to specs."""
    from treum.core.config import build_spec_config
    from treum.core.task import build_task

    directory = Path(directory)
    manifest = verify_artifact(directory)
    name = manifest["model"]
    if name not in models:
        raise ArtifactIntegrityError(
            f"{directory}: saved by model '{name}', which no enabled plugin registers (treum plugins list)"
        )
    spec = models[name]
    config = build_spec_config(spec, json.loads((directory / "config.json").read_text()))
    task = None
    task_file = directory / "task.json"
    if task_file.is_file() and tasks is not None:
        values = json.loads(task_file.read_text())
        if values.get("name") not in tasks:
            raise ArtifactIntegrityError(
                f"{directory}: saved for task '{values.get('name')}', which no enabled plugin registers"
            )
        task = build_task(tasks[values["name"]], values)
    model = build_model(spec, config, task)
    model.load_weights(directory)
    model.fitted = True
    return model


class PerEntityModel(Model):
    """A model fitted separately on each entity (GARCH, Markov switching, other arch/statsmodels models).

    Subclasses implement ``fit_entity(frame) -> dict`` (JSON-able parameters) and
    ``predict_entity(frame, params) -> DataFrame`` (the task's columns on the frame's
    index); the base class loops over entities, refuses an entity it was not fitted
    on with a clear error, and saves the parameters as ``params.json``.
    """

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        full = self.join_valid(data, valid)
        self.params_: dict[str, Any] = {
            str(entity): self.fit_entity(frame) for entity, frame in full.groupby(level="entity", sort=False)
        }

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for entity, frame in data.groupby(level="entity", sort=False):
            if str(entity) not in self.params_:
                raise ValueError(
                    f"{self.spec.name} was fitted per instrument on {', '.join(self.params_)}; "
                    f"it has no parameters for '{entity}'"
                )
            parts.append(self.predict_entity(frame, self.params_[str(entity)]))
        return pd.concat(parts).reindex(data.index)

    def fit_entity(self, frame: pd.DataFrame) -> dict[str, Any]:
        raise NotImplementedError

    def predict_entity(self, frame: pd.DataFrame, params: Any) -> pd.DataFrame:
        raise NotImplementedError

    def save_weights(self, directory: Path) -> None:
        (directory / "params.json").write_text(json.dumps(self.params_, indent=2, sort_keys=True))

    def load_weights(self, directory: Path) -> None:
        self.params_ = json.loads((directory / "params.json").read_text())


def seed_everything(seed: int) -> None:
    """Seed numpy and, if it is imported, torch, so that a run with a seed is repeatable."""
    import random
    import sys

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
