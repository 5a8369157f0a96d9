"""darts N-BEATS and TFT as global quantile forecasters of the ``forecast`` task.

Both are one darts model (``darts.models.NBEATSModel``, ``darts.models.TFTModel``) fitted over
every entity of the panel at once: each entity's series is one ``TimeSeries`` of the list that
``fit`` trains on, so a quarterly macro panel pools its three series and a daily panel its stocks.

What the network sees and predicts (``inputs``):

- ``level`` (default): the level y (``task.series``: log(close) or close), scaled per entity with
  the mean and standard deviation of that entity's training rows only, as a window of
  ``input_chunk_length`` bars ending at t; it forecasts the scaled y[t+1..t+H] (H = the task's
  longest horizon = ``output_chunk_length``) as the task's quantiles (``QuantileRegression``). The
  change is exact: quantile q of y[t+h] less the known y[t], times the entity's scale. The level,
  not its differences, so that a mean-reverting series (VIX, GDP growth) shows the network how far
  it is from its usual level. Chosen on pre-test splits (VIX 2016, macro 1983-1989), where it beat
  ``changes`` and darts' RIN at the scored horizon for both models.
- ``changes``: one target component per horizon h, the trailing change y[t] - y[t-h] scaled by its
  training spread; component h forecast h steps ahead is y[t+h] - y[t], exactly the label. Anchored
  at the last value (zero output is the random walk) but blind to the level unless
  ``level_covariate`` passes the scaled level as a past covariate.

``reversible_instance_norm=true`` (darts' RIN) normalises every window by its own mean and spread,
for trending price levels whose test values leave the training range.

Walk-forward semantics: ``predict(data)`` answers every row t whose entity has at least
``input_chunk_length`` bars up to t (NaN before), from the bars up to t only. Rather than one
darts ``predict`` per row (a Trainer, an inference dataset and a TimeSeries per row), the windows
of every row are stacked and passed through darts' own Lightning module in batches
(``_produce_predict_output`` with ``predict_likelihood_parameters``, the call darts' predict makes
per batch): the quantiles come straight from the network, no Monte Carlo sampling. On VIX this is
0.02 s (N-BEATS) and 1.6 s (TFT) for 631 rows where darts' ``predict(series=[...])`` took 1.0 s and
12 s, with identical values.

Artifacts: the module's state dict in safetensors plus a JSON of the scaler, the training sample's
shapes and the chunk lengths; loading rebuilds the darts model from its config and the module from
those shapes as darts' ``load_weights_from_checkpoint`` does, without darts' pickled ``save``.
Validation rows (``valid``) drive early stopping, with the weights of the best validation epoch kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec

CAPABILITIES = frozenset({"probabilistic", "multi_asset", "multi_horizon", "sequential", "gpu"})


@dataclass
class DartsForecasterConfig:
    """What both darts models share: window, training schedule, determinism, device."""

    input_chunk_length: int | None = None  # bars of history per forecast; None: the task's longest horizon
    n_epochs: int = 15  # at most; early stopping on the valid rows when there are enough of them
    patience: int = 3  # epochs without a better validation loss before stopping
    batch_size: int = 64
    lr: float = 1e-3
    inputs: Literal["level", "changes"] = "level"  # what the network reads and forecasts (module docstring)
    reversible_instance_norm: bool = False  # darts' RIN: normalise each window by its own mean and spread
    level_covariate: bool = False  # inputs=changes: also pass the scaled level as a past covariate
    max_samples_per_ts: int | None = None  # the most recent training windows per entity (None: all)
    seed: int = 0
    num_threads: int = 1  # torch threads; on a shared 2-core machine 1 is faster than 2
    accelerator: Literal["cpu", "auto"] = "cpu"  # auto: train on a GPU when one is there (predictions on CPU)

    def validate(self) -> str | None:
        if self.input_chunk_length is not None and self.input_chunk_length < 2:
            return f"input_chunk_length must be at least 2 bars (or null for the longest horizon), got {self.input_chunk_length}"
        for name in ("n_epochs", "patience", "batch_size", "num_threads"):
            if getattr(self, name) < 1:
                return f"{name} must be at least 1, got {getattr(self, name)}"
        if self.lr <= 0:
            return f"lr must be positive, got {self.lr}"
        if self.level_covariate and self.inputs != "changes":
            return "level_covariate adds the level to inputs=changes; with inputs=level the network reads it already"
        if self.max_samples_per_ts is not None and self.max_samples_per_ts < 1:
            return f"max_samples_per_ts must be at least 1 or null, got {self.max_samples_per_ts}"
        return None


@dataclass
class NBeatsConfig(DartsForecasterConfig):
    """N-BEATS (generic architecture): stacks of fully connected blocks with backcast residuals."""

    num_stacks: int = 2
    num_blocks: int = 1
    num_layers: int = 2
    layer_widths: int = 64
    dropout: float = 0.0

    def validate(self) -> str | None:
        for name in ("num_stacks", "num_blocks", "num_layers", "layer_widths"):
            if getattr(self, name) < 1:
                return f"{name} must be at least 1, got {getattr(self, name)}"
        if not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), got {self.dropout}"
        return super().validate()


@dataclass
class TFTConfig(DartsForecasterConfig):
    """Temporal Fusion Transformer; its only future input is darts' relative time index."""

    n_epochs: int = 8
    hidden_size: int = 16
    lstm_layers: int = 1
    num_attention_heads: int = 1
    hidden_continuous_size: int = 8
    dropout: float = 0.1
    full_attention: bool = False

    def validate(self) -> str | None:
        for name in ("hidden_size", "lstm_layers", "num_attention_heads", "hidden_continuous_size"):
            if getattr(self, name) < 1:
                return f"{name} must be at least 1, got {getattr(self, name)}"
        if self.hidden_size % self.num_attention_heads:
            return f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
        if not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), got {self.dropout}"
        return super().validate()


@contextlib.contextmanager
def _quiet(num_threads: int) -> Iterator[None]:
    """Lightning's banners and darts' data-loader warnings off, torch on ``num_threads``, restored after."""
    import lightning  # noqa: F401  (each Lightning package sets its own log level when first imported)
    import pytorch_lightning  # noqa: F401  (darts trains with this one)
    import torch

    # Lightning logs through whichever of its packages was imported last (lightning_utilities' rank_zero)
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric",
             "lightning_utilities", "darts")
    levels = {n: logging.getLogger(n).level for n in names}
    threads = torch.get_num_threads()
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        torch.set_num_threads(num_threads)
        with warnings.catch_warnings():
            for pattern in (r".*LeafSpec.*", r".*does not have many workers.*", r".*pin_memory.*",
                            r".*Total length of .* across ranks is zero.*", r".*litlogger.*",
                            r".*GPU available.*", r".*TPU available.*", r".*module\(s\) in eval mode.*"):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        torch.set_num_threads(threads)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _best_weights_callback() -> Any:
    """A Lightning callback that keeps (in memory) the module weights of the best validation epoch."""
    import lightning.pytorch as pl

    class BestWeights(pl.Callback):
        def __init__(self) -> None:
            self.best = math.inf
            self.state: dict | None = None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            loss = trainer.callback_metrics.get("val_loss")
            if trainer.sanity_checking or loss is None:
                return
            if float(loss) < self.best:
                self.best = float(loss)
                self.state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    return BestWeights()


class DartsForecaster(Model):
    """A global darts torch model predicting the task's quantiles of y[t+h] - y[t] for every horizon."""

    darts_class: ClassVar[str]

    # config -> darts ---------------------------------------------------------
    def window(self) -> int:
        """Bars of history per forecast: the config's, or the task's longest horizon (at least 2).

        Chosen on pre-test splits (VIX 2016, macro 1983-1989), never the test segments: windows of
        1-1.5 x the longest horizon beat 3 x on both (N-BEATS MASE at the scored horizon 0.85 vs 0.99
        on VIX, 0.78 vs 0.89 on macro), with as many more training windows as the series allow.
        """
        cfg = self.config
        return int(cfg.input_chunk_length) if cfg.input_chunk_length else max(2, max(self.require_task().horizons))

    def architecture(self) -> dict[str, Any]:
        """The darts constructor's model-specific arguments."""
        raise NotImplementedError

    def darts_model(self, callbacks: list | None = None) -> Any:
        """An unfitted darts model of this config for the task's horizons and quantiles."""
        import darts.models
        from darts.utils.likelihood_models import QuantileRegression

        cfg, task = self.config, self.require_task()
        trainer = {"enable_progress_bar": False, "logger": False, "enable_model_summary": False,
                   "enable_checkpointing": False, "num_sanity_val_steps": 0, "deterministic": True,
                   "accelerator": cfg.accelerator, "devices": 1, "callbacks": callbacks or []}
        return getattr(darts.models, self.darts_class)(
            input_chunk_length=self.window(),
            output_chunk_length=max(task.horizons),
            likelihood=QuantileRegression(quantiles=list(task.quantiles)),
            n_epochs=cfg.n_epochs,
            batch_size=cfg.batch_size,
            optimizer_kwargs={"lr": cfg.lr},
            use_reversible_instance_norm=cfg.reversible_instance_norm,
            random_state=cfg.seed,
            pl_trainer_kwargs=trainer,
            save_checkpoints=False,
            **self.architecture(),
        )

    # data -------------------------------------------------------------------
    def _entity_values(self, data: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(entity, row positions in ``data``, y) per entity, in order of first appearance."""
        y = self.require_task().series(data).to_numpy(dtype=float)
        ent = data.index.get_level_values("entity").astype(str).to_numpy()
        out = []
        for entity, idx in pd.Series(np.arange(len(data))).groupby(ent, sort=False):
            rows = idx.to_numpy()
            out.append((str(entity), rows, y[rows]))
        return out

    def _trailing(self, y: np.ndarray) -> np.ndarray:
        """Unscaled components: column j is y[t] - y[t - h_j] for the j-th horizon (NaN for the first h_j bars)."""
        out = np.full((len(y), len(self.horizons_)), np.nan)
        for j, h in enumerate(self.horizons_):
            out[h:, j] = y[h:] - y[:-h]
        return out

    def _inputs(self, entity: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(target components (n, 1 or horizons), past covariate (n, 1) or None) of one entity, scaled.

        ``inputs=level``: the one component is the scaled level. ``inputs=changes``: one component per
        horizon, the scaled trailing change, and the scaled level as covariate with ``level_covariate``.
        """
        scale = self.scaler_[entity]
        level = ((y - scale["level"][0]) / scale["level"][1])[:, None]
        if self.config.inputs == "level":
            return level, None
        comps = self._trailing(y) / np.asarray(scale["change"])
        return comps, (level if self.config.level_covariate else None)

    def _skip(self) -> int:
        """Leading bars without a full set of components (the trailing change at the longest horizon)."""
        return max(self.horizons_) if self.config.inputs == "changes" else 0

    def _series_list(self, frame: pd.DataFrame, need: int) -> tuple[list[Any], list[Any] | None]:
        """(targets, past covariates or None) as float32 TimeSeries (integer index), one per entity of ``frame``
        with at least ``need`` bars of trailing changes."""
        from darts import TimeSeries

        targets, covs = [], []
        skip = self._skip()
        for entity, _, y in self._entity_values(frame):
            if entity not in self.scaler_:
                continue
            y = y[np.isfinite(y)]
            if len(y) - skip < need:
                continue
            comps, level = self._inputs(entity, y)
            targets.append(TimeSeries.from_values(comps[skip:].astype(np.float32)))
            if level is not None:
                covs.append(TimeSeries.from_values(level[skip:].astype(np.float32)))
        return targets, (covs if covs else None)

    # the contract -------------------------------------------------------------
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import torch

        task = self.require_task()
        self.horizons_, self.quantiles_ = list(task.horizons), list(task.quantiles)
        self.window_, self.output_length_ = self.window(), max(self.horizons_)
        need = self.window_ + self.output_length_
        # per entity, from the training rows only: the spread of each trailing change, the level's mean and spread
        self.scaler_: dict[str, dict[str, list[float]]] = {}
        self.too_short_: list[str] = []
        lengths = {}
        for entity, _, y in self._entity_values(data):
            y = y[np.isfinite(y)]
            lengths[entity] = len(y)
            if len(y) <= self.output_length_ + 1:
                self.too_short_.append(str(entity))  # seen, too short to scale: its rows are answered NaN
                continue
            change = [float(np.std(y[h:] - y[:-h])) for h in self.horizons_]
            level = [float(np.mean(y)), float(np.std(y))]
            self.scaler_[entity] = {"change": [v if v > 0 else 1.0 for v in change],
                                    "level": [level[0], level[1] if level[1] > 0 else 1.0]}
        train, train_cov = self._series_list(data, need)
        if not train:
            raise TreumError(
                f"{self.spec.name} needs training series of at least input_chunk_length + the longest horizon "
                f"(twice with inputs=changes) = {need + self._skip()} bars per entity; the longest has "
                f"{max(lengths.values(), default=0)}. Set model.input_chunk_length lower or train on more data"
            )
        # validation windows lie inside the valid rows (the purge gap before them is not bridged)
        val, val_cov = self._series_list(valid, need) if valid is not None and len(valid) else ([], None)
        best = _best_weights_callback() if val else None
        callbacks = []
        if val:
            import lightning.pytorch as pl

            callbacks = [pl.callbacks.EarlyStopping("val_loss", patience=self.config.patience), best]
        with _quiet(self.config.num_threads):
            model = self.darts_model(callbacks)
            model.fit(train, past_covariates=train_cov, val_series=val or None, val_past_covariates=val_cov,
                      max_samples_per_ts=self.config.max_samples_per_ts,
                      dataloader_kwargs={"num_workers": 0, "pin_memory": False}, verbose=False)
        module = model.model
        if best is not None and best.state is not None:
            module.load_state_dict(best.state)
        # float64 on CPU for predictions: float32 sums depend on the batch size, so one window predicted alone
        # (serving, a truncated history) would differ from the same window in a batch by ~1e-7
        self.module_ = module.to(torch.device("cpu")).to(torch.float64).eval()
        self.sample_shape_ = {k: (list(v) if v is not None else None) for k, v in module.train_sample_shape.items()}
        self.epochs_ = int(module.epochs_trained)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        from treum.plugins.tasks.forecast import quantile_column

        task = self.require_task()
        if list(task.quantiles) != self.quantiles_ or list(task.horizons) != self.horizons_:
            raise TreumError(
                f"{self.spec.name} was fitted for horizons {self.horizons_} and quantiles {self.quantiles_}; the "
                f"task asks for {list(task.horizons)} and {list(task.quantiles)}: refit it"
            )
        w, k = self.window_, len(self.horizons_)
        changes = self.config.inputs == "changes"
        positions, windows, covs, scales, lasts = [], [], [], [], []
        for entity, rows, y in self._entity_values(data):
            if str(entity) in self.too_short_:
                continue  # too few training bars to scale it: NaN rows, as for a series shorter than the window
            if entity not in self.scaler_:
                raise TreumError(
                    f"{self.spec.name} was fitted on entities {sorted(self.scaler_)} and scales each with its own "
                    f"training statistics; it has none for '{entity}': refit it on a panel that holds '{entity}'"
                )
            if len(rows) < w:
                continue
            comps, cov = self._inputs(entity, y)
            view = np.lib.stride_tricks.sliding_window_view(comps, (w, comps.shape[1]))[:, 0]
            ok = np.isfinite(view).all(axis=(1, 2))
            if cov is not None:
                cview = np.lib.stride_tricks.sliding_window_view(cov, (w, 1))[:, 0]
                ok &= np.isfinite(cview).all(axis=(1, 2))
                covs.append(cview[ok])
            positions.append(rows[w - 1:][ok])
            windows.append(view[ok])
            scale = self.scaler_[entity]["change"] if changes else [self.scaler_[entity]["level"][1]] * k
            scales.append(np.tile(scale, (int(ok.sum()), 1)))
            lasts.append(view[ok][:, -1, 0])
        out = np.full((len(data), k, len(self.quantiles_)), np.nan)
        if positions:
            quant = self._forward(np.concatenate(windows), np.concatenate(covs) if covs else None)
            steps = np.array(self.horizons_) - 1
            if changes:  # component j (the trailing h_j-bar change) h_j steps ahead is y[t + h_j] - y[t]
                scaled = quant[:, steps, np.arange(k), :]
            else:  # the level h steps ahead less the last level
                scaled = quant[:, steps, 0, :] - np.concatenate(lasts)[:, None, None]
            change = scaled * np.concatenate(scales)[:, :, None]
            out[np.concatenate(positions)] = np.sort(change, axis=2)  # quantile heads may cross; the task forbids it
        cols = {}
        for j, h in enumerate(self.horizons_):
            for i, q in enumerate(self.quantiles_):
                cols[quantile_column(q, h)] = out[:, j, i]
        return pd.DataFrame(cols, index=data.index)

    def _forward(self, windows: np.ndarray, covariates: np.ndarray | None, chunk: int = 2048) -> np.ndarray:
        """Quantiles (rows, steps, components, quantiles) of the scaled trailing changes, via darts' module."""
        import torch
        from darts.utils.data.torch_datasets.utils import PLModuleInput

        module = self.module_
        module.predict_likelihood_parameters = True  # quantiles straight from the heads, no sampling
        shape = (self.output_length_, windows.shape[2], len(self.quantiles_))
        parts = []
        with _quiet(self.config.num_threads), torch.no_grad():
            for i in range(0, len(windows), chunk):
                x = torch.from_numpy(np.ascontiguousarray(windows[i: i + chunk], dtype=np.float64))
                cov = None
                if covariates is not None:
                    cov = torch.from_numpy(np.ascontiguousarray(covariates[i: i + chunk], dtype=np.float64))
                pred = module._produce_predict_output(PLModuleInput(past_target=x, past_covariates=cov)).prediction
                parts.append(pred.reshape(len(x), *shape).numpy())  # darts orders components, then quantiles
        return np.concatenate(parts).astype(float)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        """Only the last window and the bars its trailing changes need: serving asks for one bar."""
        return self.predict(data.iloc[-(self.window_ + self._skip()):]).iloc[-1]

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_model

        # save_model, not save_file: TFT's encoder and decoder share the relative index's prescaler
        save_model(self.module_, str(directory / "weights.safetensors"))
        (directory / "darts_state.json").write_text(json.dumps({
            "darts_class": self.darts_class,
            "input_chunk_length": self.window_,
            "output_chunk_length": self.output_length_,
            "horizons": self.horizons_,
            "quantiles": self.quantiles_,
            "train_sample_shape": self.sample_shape_,
            "scaler": self.scaler_,
            "too_short": self.too_short_,
            "epochs_trained": self.epochs_,
        }, indent=2, sort_keys=True))

    def load_weights(self, directory: Path) -> None:
        import torch
        from darts.utils.data.torch_datasets.utils import _train_sample_from_shapes
        from safetensors.torch import load_model

        meta = json.loads((directory / "darts_state.json").read_text())
        self.window_, self.output_length_ = int(meta["input_chunk_length"]), int(meta["output_chunk_length"])
        self.horizons_, self.quantiles_ = [int(h) for h in meta["horizons"]], [float(q) for q in meta["quantiles"]]
        self.scaler_ = meta["scaler"]
        self.too_short_ = list(meta.get("too_short", []))
        self.sample_shape_, self.epochs_ = meta["train_sample_shape"], int(meta["epochs_trained"])
        if self.window() != self.window_ or max(self.require_task().horizons) != self.output_length_:
            raise TreumError(
                f"{directory}: saved with input_chunk_length {self.window_} and output_chunk_length "
                f"{self.output_length_}, but its config and task give {self.window()} and "
                f"{max(self.require_task().horizons)}"
            )
        # as darts' load_weights_from_checkpoint: the module from the training sample's shapes, then its weights
        with _quiet(self.config.num_threads):
            model = self.darts_model()
            model.train_sample = _train_sample_from_shapes(self.sample_shape_, dtype=np.float32)
            module = model._init_model()
        module.to(torch.float64)
        load_model(module, str(directory / "weights.safetensors"))
        self.module_ = module.eval()


class NBeatsForecaster(DartsForecaster):
    darts_class = "NBEATSModel"

    def architecture(self) -> dict[str, Any]:
        c = self.config
        return {"generic_architecture": True, "num_stacks": c.num_stacks, "num_blocks": c.num_blocks,
                "num_layers": c.num_layers, "layer_widths": c.layer_widths, "dropout": c.dropout}


class TFTForecaster(DartsForecaster):
    darts_class = "TFTModel"

    def architecture(self) -> dict[str, Any]:
        c = self.config
        # no covariates: darts' relative index (position relative to t) is the only future input
        return {"hidden_size": c.hidden_size, "lstm_layers": c.lstm_layers,
                "num_attention_heads": c.num_attention_heads, "hidden_continuous_size": c.hidden_continuous_size,
                "dropout": c.dropout, "full_attention": c.full_attention, "add_relative_index": True}


NBeatsForecaster.spec = ModelSpec(
    name="nbeats",
    family="neural",
    task="forecast",
    capabilities=CAPABILITIES,
    config_cls=NBeatsConfig,
    factory=NBeatsForecaster,
    description="darts N-BEATS, one global network over the panel's series, quantile regression of the next H levels",
)

TFTForecaster.spec = ModelSpec(
    name="tft",
    family="transformer",
    task="forecast",
    capabilities=CAPABILITIES,
    config_cls=TFTConfig,
    factory=TFTForecaster,
    description="darts Temporal Fusion Transformer, one global network over the panel's series, quantile outputs",
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [NBeatsForecaster.spec, TFTForecaster.spec]
