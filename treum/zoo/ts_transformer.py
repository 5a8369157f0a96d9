"""The time-series transformer of the specification, in Lightning.

Linear embedding of a window of standardised features, sinusoidal positional
encoding, a stack of encoder layers, and a head on the last position that gives
P(up) for every horizon the task labels (``target``, ``target_h5``, ...).
Standardisation statistics come from the training rows only.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec


@dataclass
class TSTransformerConfig:
    window: int = 32
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 64
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 12
    patience: int = 3
    seed: int = 0
    num_threads: int = 2
    accelerator: Literal["cpu", "auto"] = "cpu"

    def validate(self) -> str | None:
        if self.d_model % self.n_heads:
            return f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
        if self.window < 2:
            return f"window must be at least 2, got {self.window}"
        return None


def _build_network(n_features: int, n_outputs: int, cfg: TSTransformerConfig):
    import torch
    from torch import nn

    class PositionalEncoding(nn.Module):
        def __init__(self, d_model: int, max_len: int):
            super().__init__()
            pos = torch.arange(max_len).unsqueeze(1)
            div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, d_model)
            pe[:, 0::2] = torch.sin(pos * div)
            pe[:, 1::2] = torch.cos(pos * div)
            self.register_buffer("pe", pe.unsqueeze(0), persistent=False)

        def forward(self, x):
            return x + self.pe[:, : x.size(1)]

    class TimeSeriesTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Linear(n_features, cfg.d_model)
            self.positional_encoding = PositionalEncoding(cfg.d_model, cfg.window)
            layer = nn.TransformerEncoderLayer(
                cfg.d_model, cfg.n_heads, cfg.dim_feedforward, cfg.dropout, batch_first=True
            )
            self.transformer = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
            self.output_layer = nn.Linear(cfg.d_model, n_outputs)

        def forward(self, x):
            x = self.positional_encoding(self.embedding(x))
            x = self.transformer(x)
            return self.output_layer(x[:, -1, :])

    return TimeSeriesTransformer()


def _lightning_module(net, cfg: TSTransformerConfig):
    import lightning as L
    import torch

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def _loss(self, batch):
            x, y = batch
            logits = self.net(x)
            mask = torch.isfinite(y)
            target = torch.where(mask, y, torch.zeros_like(y))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
            return (loss * mask).sum() / mask.sum().clamp(min=1)

        def training_step(self, batch, _):
            return self._loss(batch)

        def validation_step(self, batch, _):
            self.log("val_loss", self._loss(batch), prog_bar=False)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    return Module()


class TSTransformer(Model):
    def _windows(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(positions of rows with a full window, windows of standardised features)."""
        x_all = ((data[self.features_].to_numpy(dtype=float) - self.mean_) / self.std_).astype(np.float32)
        w = self.config.window
        positions, windows = [], []
        ent = data.index.get_level_values("entity")
        for _, idx in pd.Series(np.arange(len(data))).groupby(ent.to_numpy(), sort=False):
            rows = idx.to_numpy()
            block = x_all[rows]
            if len(rows) < w:
                continue
            view = np.lib.stride_tricks.sliding_window_view(block, (w, block.shape[1]))[:, 0]
            ok = np.isfinite(view).all(axis=(1, 2))
            positions.append(rows[w - 1 :][ok])
            windows.append(view[ok])
        if not positions:
            return np.array([], dtype=int), np.zeros((0, w, len(self.features_)), dtype=np.float32)
        return np.concatenate(positions), np.concatenate(windows)

    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        cfg = self.config
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            # "GPU available: False" and tips on every fit drown the progress of a walk-forward
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=r".*validation_step.*val_dataloader.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        torch.set_num_threads(cfg.num_threads)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        self.features_ = feature_columns(data)
        self.targets_ = ["target"] + sorted(
            (c for c in data.columns if c.startswith("target_h")), key=lambda c: int(c[8:])
        )
        x = data[self.features_].to_numpy(dtype=float)
        self.mean_ = np.nanmean(x, axis=0)
        self.std_ = np.nanstd(x, axis=0)
        self.std_[~np.isfinite(self.std_) | (self.std_ == 0)] = 1.0

        def dataset(frame: pd.DataFrame, since: pd.Timestamp | None = None):
            pos, win = self._windows(frame)
            y = frame[self.targets_].to_numpy(dtype=np.float32)[pos]
            keep = np.isfinite(y).any(axis=1)
            if since is not None:
                keep &= frame.index.get_level_values("timestamp")[pos] >= since
            return TensorDataset(torch.from_numpy(win[keep]), torch.from_numpy(y[keep]))

        train_ds = dataset(data)
        gen = torch.Generator().manual_seed(cfg.seed)
        train_dl = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=gen)
        self.net_ = _build_network(len(self.features_), len(self.targets_), cfg)
        module = _lightning_module(self.net_, cfg)
        callbacks = []
        val_dl = None
        best = _BestWeights()
        if valid is not None and len(valid):
            # the valid rows need their preceding window: prepend the tail of train as context
            context = pd.concat([data, valid]).sort_index()
            val_ds = dataset(context, since=valid.index.get_level_values("timestamp").min())
            if len(val_ds):
                val_dl = DataLoader(val_ds, batch_size=cfg.batch_size)
                callbacks = [L.pytorch.callbacks.EarlyStopping("val_loss", patience=cfg.patience), best]
        trainer = L.Trainer(
            max_epochs=cfg.max_epochs,
            accelerator=cfg.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=True,
            callbacks=callbacks,
        )
        trainer.fit(module, train_dl, val_dl)
        if best.state is not None:
            self.net_.load_state_dict(best.state)
        self.net_.eval()

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        import torch

        pos, win = self._windows(data)
        out = np.full((len(data), len(self.targets_)), np.nan)
        if len(pos):
            with torch.no_grad():
                logits = torch.cat(
                    [self.net_(torch.from_numpy(win[i : i + 4096])) for i in range(0, len(win), 4096)]
                )
            out[pos] = torch.sigmoid(logits).numpy()
        cols = {"p_up": out[:, 0]}
        for j, t in enumerate(self.targets_[1:], start=1):
            cols[f"p_up_h{t[8:]}"] = out[:, j]
        return pd.DataFrame(cols, index=data.index)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        """Only the last window: serving asks for one bar, not every window of its context."""
        return self.predict(data.iloc[-self.config.window :]).iloc[-1]

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(directory / "weights.safetensors"))
        (directory / "normalisation.json").write_text(
            json.dumps(
                {
                    "features": self.features_,
                    "targets": self.targets_,
                    "mean": self.mean_.tolist(),
                    "std": self.std_.tolist(),
                }
            )
        )

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        meta = json.loads((directory / "normalisation.json").read_text())
        self.features_, self.targets_ = meta["features"], meta["targets"]
        self.mean_, self.std_ = np.array(meta["mean"]), np.array(meta["std"])
        self.net_ = _build_network(len(self.features_), len(self.targets_), self.config)
        self.net_.load_state_dict(load_file(str(directory / "weights.safetensors")))
        self.net_.eval()


class _BestWeights:
    """Keeps the weights of the epoch with the lowest validation loss (in memory, no files)."""

    def __new__(cls):
        import lightning as L

        class Callback(L.pytorch.callbacks.Callback):
            def __init__(self):
                self.best = math.inf
                self.state = None

            def on_validation_end(self, trainer, pl_module):
                loss = trainer.callback_metrics.get("val_loss")
                if loss is not None and float(loss) < self.best:
                    self.best = float(loss)
                    self.state = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

        return Callback()


TSTransformer.spec = ModelSpec(
    name="ts_transformer",
    family="transformer",
    task="direction",
    capabilities=frozenset({"probabilistic", "multi_asset", "multi_horizon", "gpu", "sequential", "uses_features"}),
    config_cls=TSTransformerConfig,
    factory=TSTransformer,
    description="transformer encoder over a window of technical features, P(up) at several horizons",
    extra=None,
)


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [TSTransformer.spec]
