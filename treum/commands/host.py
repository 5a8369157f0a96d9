"""What a plugin's ``treum`` subcommand may use (``treum_commands``): the plugins, the registry, deployed
versions and data sets, so that a plugin imports nothing of treum beyond ``treum.core``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from treum.core.data import slice_time
from treum.core.errors import NotFoundError, TreumError


@dataclass
class Deployed:
    """A deployed version, loaded (its artifact's hashes verified) with the task it was registered for."""

    name: str
    version: str
    id: str
    model: Any
    task: Any
    data: str | None
    features: str
    entities: tuple[str, ...]


class CommandHost:
    """The host side of a plugin command: ``--url`` names the registry (default: $TREUM_REGISTRY_URL or
    SQLite in $TREUM_HOME)."""

    def __init__(self, plugins: Any, url: str | None = None):
        self.plugins = plugins
        self.url = url
        self._registry: Any = None

    def registry(self) -> Any:
        """The registry (``treum.registry.store.Registry``), opened on first use."""
        if self._registry is None:
            from treum.registry.store import Registry

            self._registry = Registry(url=self.url)
        return self._registry

    def deployed(self, task: str, name: str | None = None) -> Deployed:
        """The deployed version of ``task`` (of model ``name`` when given); an error says how to deploy one."""
        from treum.serve.live import load_version, task_of

        rows = [m for m in self.registry().list_models() if m.deployment_status == "deployed" and m.model_type == task
                and (name is None or m.model_name == name)]
        if not rows:
            what = f"model '{name}' of task '{task}'" if name else f"model of task '{task}'"
            raise NotFoundError(f"no {what} is deployed; train one (`treum train task={task} model=NAME`) and deploy "
                                "it with `treum registry deploy NAME`")
        if len(rows) > 1:
            raise TreumError(f"{len(rows)} deployed models answer task '{task}' "
                             f"({', '.join(m.model_name for m in rows)}); choose one with --model")
        row = rows[0]
        meta = row.model_metadata or {}
        task_obj = task_of(self.plugins, task, meta)
        model = load_version(self.registry(), self.plugins, row.artifact_sha256, task_obj)
        return Deployed(row.model_name, row.model_version, str(row.id), model, model.task or task_obj,
                        meta.get("data"), meta.get("features", "technical"), tuple(meta.get("entities") or ()))

    def panel(self, data: str, end: Any = None, bars: int | None = None, features: str | None = None) -> pd.DataFrame:
        """A registered data set up to ``end`` (its last ``bars`` bars), with a feature set's columns if named."""
        panel = self.plugins.dataset(data).load({})
        panel = slice_time(panel, end=pd.Timestamp(end)) if end is not None else panel
        if panel.empty:
            raise TreumError(f"data set '{data}' has no bars on or before {end}")
        if bars is not None:
            ts = pd.DatetimeIndex(panel.index.get_level_values("timestamp").unique()).sort_values()
            panel = slice_time(panel, start=ts[max(0, len(ts) - bars)])
        if features:
            panel = panel.join(self.plugins.feature_set(features).compute(panel, {}))
        return panel

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
