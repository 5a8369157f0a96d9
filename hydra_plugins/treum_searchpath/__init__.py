"""A Hydra search-path plugin: puts the config packages of treum's plugins on Hydra's search path.

treum's run commands set ``TREUM_HYDRA_SEARCHPATH`` (the ``pkg://...`` entries that
the enabled plugins return from ``treum_config_searchpath``, separated by ``;``)
before Hydra starts, so ``--help``, shell completion, ``--cfg`` and every launcher
(including joblib's worker processes, which inherit the environment) see the
plugins' config groups. Other Hydra applications never set it and are unaffected.
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENV = "TREUM_HYDRA_SEARCHPATH"


class TreumSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for entry in filter(None, os.environ.get(ENV, "").split(";")):
            search_path.append(provider="treum-plugin", path=entry)
