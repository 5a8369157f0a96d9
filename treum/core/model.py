"""The model contract and the artifact format every model shares.

A model is built from its validated config alone, learns in ``fit``, answers in
``predict`` with a frame indexed like its input, and saves into a directory:
``config.json``, its native weights (written by ``save_weights``) and
``manifest.json`` with the SHA-256 of every file. ``load_model`` refuses a
directory whose files do not match their manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from treum.core.errors import ArtifactIntegrityError
from treum.core.specs import ModelSpec

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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
    raw columns, ``f_*`` feature columns and the task's ``target*`` columns.
    ``predict(data)`` returns the task's prediction columns for every row of ``data``
    (a sequential model uses the earlier rows of ``data`` as context only).
    """

    spec: ClassVar[ModelSpec]

    def __init__(self, config: Any):
        self.config = config
        self.fitted = False

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
    manifest = json.loads(path.read_text())
    for name, digest in manifest["files"].items():
        file = directory / name
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


def load_model(directory: str | Path, models: dict[str, ModelSpec]) -> Model:
    """Load a saved model after verifying its hashes; ``models`` maps names to specs."""
    from treum.core.config import build_config

    directory = Path(directory)
    manifest = verify_artifact(directory)
    name = manifest["model"]
    if name not in models:
        raise ArtifactIntegrityError(
            f"{directory}: saved by model '{name}', which no enabled plugin registers (treum plugins list)"
        )
    spec = models[name]
    config = build_config(spec, json.loads((directory / "config.json").read_text()))
    model = spec.factory(config)
    model.load_weights(directory)
    model.fitted = True
    return model


def seed_everything(seed: int) -> None:
    """Seed numpy and, if it is imported, torch, so that a run with a seed is repeatable."""
    import random
    import sys

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
