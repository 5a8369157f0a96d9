"""Chart CNN: a convolutional network that reads price charts, after Jiang, Kelly and Xiu (2023).

"(Re-)Imag(in)ing Price Trends" (J. Finance 78(6)) draws the last ``window`` bars of a
stock as a black-and-white image and lets a CNN learn which pictures precede a rise.
This module draws the same images with numpy alone (``render_charts``, vectorised
over many images at once) and trains a timm network on them from random weights:

- the image: ``height`` pixel rows by 3 columns per bar. Each bar is an OHLC glyph
  (the open a tick in the bar's left column, the high-low range a vertical line in its
  middle column, the close a tick in its right column); a moving average of the close
  over ``window`` bars is a line through the middle columns; the volume is a bar in the
  middle column of the bottom fifth. Prices are scaled to the window's own range (the
  lowest low and highest high, the moving average included, as JKX do), volumes to the
  window's largest, so an image carries no price level. A bar without open, high or low
  falls back to its close (``sp500_stocks`` has closes only: its glyphs are single dots
  joined by nothing but the moving average, and its volume strip stays empty).
- the row at t is drawn from bars up to and including t; it needs ``window`` bars, and
  ``2 * window - 1`` when the moving average is drawn (``history``); earlier rows, and
  rows whose history has a missing close, are answered NaN. The model is therefore
  ``sequential``: the walk-forward gives it the bars before each test block as context.
- the network: ``timm.create_model(arch, pretrained=False, in_chans=1, num_classes=1,
  **arch_kwargs)``, never pretrained weights (nothing is downloaded). The small default is
  a ``resnet10t`` with 8..64 channels (80k weights); ``experiment=full_zoo`` the full-width one on
  JKX-sized 64-row images.
- training: all entities of the panel pooled (``max_train_images`` drawn at random when
  there are more), binary cross-entropy, Adam, early stopping on the loss of the fit's
  ``valid`` rows (drawn from the validation block alone, never across the purge gap).

Two specs share the class, as ``gbm_direction`` and ``gbm_technical`` share theirs:
``chart_cnn`` (task ``direction``) learns the task's ``target`` (or ``target_h{horizon}``
when ``horizon`` names another horizon the task labels) and answers ``p_up``;
``chart_cnn_rank`` (task ``cross_section``) learns ``target_up`` (the forward return
beats the day's median) and answers ``score``, that probability.

Warm start (``online_update``). The walk-forward builds a fresh model for every fold, so
the model keeps, in this process, the weights of its last fit under a key: the model's
name, its config (every field), the label it learns, the entities and the first training
timestamp. With ``warm_start: true`` a fit starts from the kept weights only when its
training rows strictly extend the kept fit's: same key (so the same start) and a later
last training timestamp. It then trains ``update_epochs`` epochs instead of
``max_epochs``. A fit on the same rows again, on an earlier end, on other entities or
from another start (a rolling window) starts from random weights, so two fits of one
seed on one data set agree, and a walk-forward run twice in one process gives the same
figures. The kept weights are those of this process only (at most ``_WARM_KEYS`` keys);
nothing is written to disk.

Weights are saved with safetensors, the rest as JSON.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.early_stopping import EarlyStopping
from treum.core.errors import ConfigError, TreumError, did_you_mean
from treum.core.hookspecs import hookimpl
from treum.core.model import Model
from treum.core.specs import ModelSpec


@dataclass
class ChartCNNConfig:
    window: int = 20  # bars per image (JKX: 5, 20 or 60)
    height: int = 32  # pixel rows (JKX: 32 for 5 bars, 64 for 20, 96 for 60)
    moving_average: bool = True  # draw the window-length moving average of the close
    volume: bool = True  # reserve the bottom fifth for volume bars
    horizon: int | None = None  # label horizon to learn; None: the task's own (``target``)
    arch: str = "resnet10t"  # any timm model name; always built with pretrained=False
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # more timm.create_model keywords (widths, drop rates)
    lr: float = 0.001
    weight_decay: float = 0.0001
    batch_size: int = 128
    max_epochs: int = 4
    patience: int = 2  # epochs without a lower validation loss before stopping
    max_train_images: int | None = 4000  # a random draw of training images when there are more; None: all
    max_valid_images: int | None = 1000
    warm_start: bool = True  # start from the previous fit's weights when the data strictly extends it
    update_epochs: int = 1  # epochs of a warm-started fit
    predict_batch: int = 256
    seed: int = 0
    num_threads: int = 1  # two threads beside another busy process on 2 cores ran up to 9x slower
    accelerator: Literal["cpu", "auto"] = "cpu"  # auto: a GPU when there is one

    def validate(self) -> str | None:
        if self.window < 2:
            return f"window must be at least 2 bars, got {self.window}"
        if self.height < 16:
            return f"height must be at least 16 pixel rows (JKX use 32 to 96), got {self.height}"
        if self.horizon is not None and self.horizon < 1:
            return f"horizon must be a positive number of bars or null (the task's own), got {self.horizon}"
        if not self.arch:
            return "arch must name a timm model, e.g. resnet10t"
        if "pretrained" in self.arch_kwargs or "in_chans" in self.arch_kwargs or "num_classes" in self.arch_kwargs:
            return ("arch_kwargs may not set pretrained, in_chans or num_classes: the chart CNN is always "
                    "trained from random weights on one-channel images with one logit")
        if not self.lr > 0 or self.weight_decay < 0:
            return (f"lr must be positive and weight_decay not negative, got lr={self.lr}, "
                    f"weight_decay={self.weight_decay}")
        if self.batch_size < 2 or self.predict_batch < 16 or self.predict_batch % 16:
            return (f"batch_size must be at least 2 and predict_batch a multiple of 16, got {self.batch_size}, "
                    f"{self.predict_batch}")
        if self.max_epochs < 1 or self.update_epochs < 1 or self.patience < 1:
            return "max_epochs, update_epochs and patience must be at least 1"
        for key in ("max_train_images", "max_valid_images"):
            value = getattr(self, key)
            if value is not None and value < 100:
                return f"{key} must be at least 100 images or null (all), got {value}"
        return None

    @property
    def history(self) -> int:
        """Bars one image needs: the window, plus the moving average's own window before it."""
        return 2 * self.window - 1 if self.moving_average else self.window


# rendering ----------------------------------------------------------------------
def _filled(values: np.ndarray | None, close: np.ndarray) -> np.ndarray:
    if values is None:
        return close
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, close)


def render_charts(open_: np.ndarray | None, high: np.ndarray | None, low: np.ndarray | None, close: np.ndarray,
                  volume: np.ndarray | None = None, ma: np.ndarray | None = None, height: int = 64,
                  volume_area: bool = True) -> np.ndarray:
    """Draw OHLC charts of N windows of W bars as ``uint8`` images of shape (N, height, 3 * W).

    Each argument is an (N, W) array, oldest bar first (``None``: not there). Pixels are 255
    (drawn) or 0. Bar ``i`` owns columns ``3i`` (open tick), ``3i + 1`` (the high-low line, and
    its volume bar) and ``3i + 2`` (close tick). The price area is the top of the image; with
    ``volume_area`` the bottom ``height // 5`` rows hold volume bars (scaled to the window's
    largest volume, a missing volume draws nothing) and one empty row separates them.
    Prices map linearly onto the price area's rows, the window's highest price (of the highs
    and the moving average) on the top row and its lowest on the bottom row; a flat window
    is drawn on the middle row. A missing open, high or low is the bar's close; the high and
    low are widened to hold the open and close. ``ma`` (the moving average at each bar,
    computed from closes up to that bar) is a line through the bars' middle columns, left
    out where it is NaN. A window with a missing close is the caller's to refuse.
    """
    close = np.asarray(close, dtype=float)
    if close.ndim != 2:
        raise ValueError(f"render_charts takes (N, W) arrays of windows, got close of shape {close.shape}")
    n, w = close.shape
    o = _filled(open_, close)
    h = np.maximum.reduce([_filled(high, close), o, close])
    lo_ = np.minimum.reduce([_filled(low, close), o, close])
    vol_rows = height // 5 if volume_area else 0
    price_rows = height - vol_rows - (1 if vol_rows else 0)
    top, bottom = h.max(axis=1), lo_.min(axis=1)
    if ma is not None:
        ma = np.asarray(ma, dtype=float)
        known = np.isfinite(ma)
        top = np.maximum(top, np.where(known, ma, -np.inf).max(axis=1))
        bottom = np.minimum(bottom, np.where(known, ma, np.inf).min(axis=1))
    span = (top - bottom)[:, None]
    flat = ~(span > 0)
    scale = np.where(flat, 0.0, (price_rows - 1) / np.where(flat, 1.0, span))

    def rows(p: np.ndarray) -> np.ndarray:  # float rows, 0 = top; flat windows on the middle row
        r = (top[:, None] - p) * scale
        return np.where(flat, (price_rows - 1) // 2, r)

    def pix(r: np.ndarray) -> np.ndarray:  # integer pixel rows inside the price area
        return np.clip(np.rint(r), 0, price_rows - 1).astype(np.int16)

    # every stroke is a vertical span of rows [start, stop] in one column: the spans go into a difference
    # array (+1 at the first row, -1 below the last) whose running sum down the rows is the picture
    diff = np.zeros((n, height + 1, 3 * w), dtype=np.int8)
    nn = np.arange(n)[:, None]
    bar_cols = 3 * np.arange(w)

    def stroke(start: np.ndarray, stop: np.ndarray, cols: np.ndarray, keep: np.ndarray | None = None) -> None:
        start, stop = np.broadcast_arrays(start, stop)
        if keep is not None:  # a stroke left out ends where it starts: +1 and -1 on one row
            stop = np.where(keep, stop, start - 1)
        diff[nn, start, cols] += 1
        diff[nn, stop + 1, cols] -= 1

    o_row, c_row = pix(rows(o)), pix(rows(close))
    stroke(o_row, o_row, bar_cols)  # open tick, left column
    stroke(pix(rows(h)), pix(rows(lo_)), bar_cols + 1)  # high-low line, middle column
    stroke(c_row, c_row, bar_cols + 2)  # close tick, right column
    if vol_rows and volume is not None:
        v = np.asarray(volume, dtype=float)
        v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
        vmax = v.max(axis=1, keepdims=True)
        bars = np.rint(v / np.where(vmax > 0, vmax, 1.0) * vol_rows).astype(np.int16)
        stroke(height - bars, np.full_like(bars, height - 1), bar_cols + 1, bars > 0)
    if ma is not None:
        rm = rows(np.asarray(ma, dtype=float))  # (N, W) at the middle columns 3i + 1
        x = np.arange(3 * w, dtype=float)

        def at(q: np.ndarray) -> np.ndarray:  # the line's row at horizontal position q, linear between centres
            f = np.clip((q - 1.0) / 3.0, 0, w - 1)
            i0 = np.minimum(np.floor(f).astype(int), max(w - 2, 0))
            i1 = np.minimum(i0 + 1, w - 1)
            frac = f - i0
            return rm[:, i0] * (1 - frac) + rm[:, i1] * frac

        mid, left, right = at(x), at(x - 0.5), at(x + 0.5)
        # each column spans the rows the line crosses between its edges (a steep line stays connected)
        lo_r = np.fmin(np.fmin(left, right), mid)
        hi_r = np.fmax(np.fmax(left, right), mid)
        ok = np.isfinite(mid) & ((x >= 1) & (x <= 3 * w - 2))[None, :]  # from the first to the last middle column
        stroke(pix(np.where(ok, lo_r, 0)), pix(np.where(ok, hi_r, 0)), np.arange(3 * w), ok)
    drawn = np.cumsum(diff[:, :height], axis=1, dtype=np.int8) > 0
    return drawn.view(np.uint8) * np.uint8(255)


# the panel as windows -------------------------------------------------------------
@dataclass
class Bars:
    """A frame's bars sorted by entity, then time: what ``render_charts`` needs for any of its rows."""

    order: np.ndarray  # positions in the frame, in sorted order
    open: np.ndarray | None
    high: np.ndarray | None
    low: np.ndarray | None
    close: np.ndarray
    volume: np.ndarray | None
    ma: np.ndarray | None
    ready: np.ndarray  # sorted row has a complete history (every close of it present)

    @classmethod
    def of(cls, data: pd.DataFrame, cfg: ChartCNNConfig) -> "Bars":
        if "close" not in data.columns:
            raise TreumError("the chart CNN draws price charts and needs a 'close' column (open, high, low and "
                             "volume are optional)")
        ts = data.index.get_level_values("timestamp").to_numpy()
        codes, _ = pd.factorize(data.index.get_level_values("entity"))
        order = np.lexsort((ts, codes))
        codes = codes[order]

        def col(name: str) -> np.ndarray | None:
            return data[name].to_numpy(dtype=float)[order] if name in data.columns else None

        close = col("close")
        start = np.r_[True, codes[1:] != codes[:-1]][: len(codes)]
        first = np.maximum.accumulate(np.where(start, np.arange(len(codes)), 0))
        local = np.arange(len(codes)) - first  # bars of the entity before this one
        bad = np.cumsum(~np.isfinite(close))

        def back(a: np.ndarray, k: int) -> np.ndarray:  # a[s - k], 0 before the start of the array
            return np.r_[np.zeros(min(k, len(a)), dtype=a.dtype), a[:-k]] if k < len(a) else np.zeros_like(a)

        def clean(k: int) -> np.ndarray:  # the entity's last k closes up to this row (included) are all present
            return (local >= k - 1) & (bad - back(bad, k) == 0)

        ready = clean(cfg.history)
        ma = None
        if cfg.moving_average:
            m = cfg.window
            csum = np.cumsum(np.where(np.isfinite(close), close, 0.0))
            ma = np.where(clean(m), (csum - back(csum, m)) / m, np.nan)
        return cls(order, col("open"), col("high"), col("low"), close, col("volume"), ma, ready)

    def images(self, sorted_rows: np.ndarray, cfg: ChartCNNConfig, chunk: int = 8192) -> np.ndarray:
        """(len(sorted_rows), height, 3 * window) images of the given sorted rows (each must be ``ready``)."""
        out = np.zeros((len(sorted_rows), cfg.height, 3 * cfg.window), dtype=np.uint8)
        offsets = np.arange(-cfg.window + 1, 1)
        for s in range(0, len(sorted_rows), chunk):
            idx = sorted_rows[s:s + chunk, None] + offsets[None, :]

            def take(a: np.ndarray | None, idx: np.ndarray = idx) -> np.ndarray | None:
                return None if a is None else a[idx]

            out[s:s + chunk] = render_charts(take(self.open), take(self.high), take(self.low), self.close[idx],
                                             take(self.volume) if cfg.volume else None, take(self.ma), cfg.height,
                                             cfg.volume)
        return out


# the network ------------------------------------------------------------------------
def _net(cfg: ChartCNNConfig) -> Any:
    import timm

    if not timm.is_model(cfg.arch):
        raise ConfigError(f"model.arch: timm has no model '{cfg.arch}'{did_you_mean(cfg.arch, timm.list_models())}; "
                          "small ones that take 32-row charts: resnet10t, resnet14t, test_resnet, test_byobnet")
    try:
        return timm.create_model(cfg.arch, pretrained=False, in_chans=1, num_classes=1, **cfg.arch_kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.arch_kwargs {cfg.arch_kwargs} do not fit timm's '{cfg.arch}': {exc}") from None


_BATCH_MULTIPLE = 16  # oneDNN's convolutions agreed to the last bit across such batch sizes (not across 1 and 256)
_WARM_KEYS = 8
_WARM: collections.OrderedDict[tuple, tuple[pd.Timestamp, dict[str, Any]]] = collections.OrderedDict()


def clear_warm_starts() -> None:
    """Forget every kept fit (the next fit of each key starts from random weights)."""
    _WARM.clear()


class ChartCNN(Model):
    """The chart CNN on the direction task (``p_up``); ``ChartCNNRank`` is the same on cross_section."""

    prediction = "p_up"  # the column it answers in

    # labels --------------------------------------------------------------------
    def label_column(self, data: pd.DataFrame) -> str:
        """The direction label of the config's horizon; only a horizon the task labels."""
        h = self.config.horizon
        col = "target"
        if h is not None:
            task = self.require_task()
            labelled = [task.config.horizon, *task.config.horizons]
            if h not in labelled:
                raise ConfigError(f"model.horizon={h}: the direction task labels horizons {sorted(set(labelled))} "
                                  f"only; set model.horizon to one of them, null (the task's own), or add {h} to "
                                  "task.horizons")
            col = "target" if h == task.config.horizon else f"target_h{h}"
        if col not in data.columns:
            raise TreumError(f"{self.spec.name} learns the label '{col}', which the training data does not have")
        return col

    # images --------------------------------------------------------------------
    def _rows(self, data: pd.DataFrame, label: str | None, limit: int | None, salt: int,
              since: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(frame positions, images, labels) of the rows with a full history (and a label), at most ``limit``."""
        bars = Bars.of(data, self.config)
        keep = bars.ready.copy()
        y = None
        if label is not None:
            y = data[label].to_numpy(dtype=float)[bars.order]
            keep &= np.isfinite(y)
        if since is not None:
            ts = data.index.get_level_values("timestamp").to_numpy()[bars.order]
            keep &= ts >= np.datetime64(pd.Timestamp(since))
        rows = np.flatnonzero(keep)
        if limit is not None and len(rows) > limit:
            rng = np.random.default_rng([self.config.seed, salt])
            rows = np.sort(rng.choice(rows, size=limit, replace=False))
        images = bars.images(rows, self.config)
        return bars.order[rows], images, (y[rows] if y is not None else None)

    def _device(self) -> Any:
        import torch

        if self.config.accelerator == "auto" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def _logits(self, images: np.ndarray) -> np.ndarray:
        import torch

        dev = self._device()
        out = np.empty(len(images))
        b = self.config.predict_batch
        self.net_.eval()
        with torch.no_grad():
            for s in range(0, len(images), b):
                chunk = images[s:s + b]
                pad = -len(chunk) % _BATCH_MULTIPLE
                if pad:  # batches of a multiple of 16 images: one image's answer then does not depend on its batch
                    chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), dtype=chunk.dtype)])
                x = torch.from_numpy(chunk).to(dev).unsqueeze(1).float().div_(255.0)
                out[s:s + b] = self.net_(x).squeeze(-1).double().cpu().numpy()[: len(chunk) - pad]
        return out

    def _loss(self, images: np.ndarray, y: np.ndarray) -> float:
        z = self._logits(images)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))  # binary cross-entropy with logits

    # warm start ------------------------------------------------------------------
    def _warm_key(self, data: pd.DataFrame, label: str) -> tuple:
        cfg = json.dumps(dataclasses.asdict(self.config), sort_keys=True, default=str)
        entities = tuple(sorted(map(str, data.index.get_level_values("entity").unique())))
        first = data.index.get_level_values("timestamp").min()
        return (self.spec.name, hashlib.sha256(cfg.encode()).hexdigest(), label, entities, first)

    # the contract -----------------------------------------------------------------
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.set_num_threads(cfg.num_threads)
        label = self.label_column(data)
        self.label_ = label
        _, x, y = self._rows(data, label, cfg.max_train_images, salt=0)
        if len(x) < 100:
            raise TreumError(f"{self.spec.name} needs at least 100 labelled rows with {cfg.history} bars of history "
                             f"before them to draw its charts; the training data gives {len(x)}")
        vx = vy = None
        if valid is not None and len(valid) and label in valid.columns:
            _, vx, vy = self._rows(valid, label, cfg.max_valid_images, salt=1)
            if len(vx) == 0:
                vx = vy = None
        dev = self._device()
        self.net_ = _net(cfg).to(dev)
        key = self._warm_key(data, label)
        end = data.index.get_level_values("timestamp").max()
        kept = _WARM.get(key)
        self.warm_started_ = bool(cfg.warm_start and kept is not None and kept[0] < end)
        if self.warm_started_:
            self.net_.load_state_dict(kept[1])
        epochs = cfg.update_epochs if self.warm_started_ else cfg.max_epochs
        opt = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(y.astype(np.float32))
        stopper = EarlyStopping(cfg.patience)
        if self.warm_started_ and vx is not None:  # the kept weights are a candidate too
            stopper.step(self._loss(vx, vy), self.net_)
        self.epochs_ = 0
        for epoch in range(epochs):
            self.net_.train()
            order = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(order), cfg.batch_size):
                pick = order[s:s + cfg.batch_size]
                if len(pick) < 2:  # batch norm needs two images
                    continue
                xb = xt[pick].to(dev).unsqueeze(1).float().div_(255.0)
                logit = self.net_(xb).squeeze(-1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, yt[pick].to(dev))
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_ = epoch + 1
            if vx is None:
                continue
            if stopper.step(self._loss(vx, vy), self.net_):
                break
        stopper.restore(self.net_)
        self.net_.eval()
        self.valid_loss_ = stopper.best_or_none
        self.n_train_ = int(len(x))
        _WARM[key] = (end, {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()})
        _WARM.move_to_end(key)
        while len(_WARM) > _WARM_KEYS:
            _WARM.popitem(last=False)

    def predict_from(self, data: pd.DataFrame, start: Any) -> pd.DataFrame:
        """Answers for the rows at or after ``start`` (all rows when None); earlier rows are context only."""
        out = np.full(len(data), np.nan)
        if len(data):
            pos, images, _ = self._rows(data, None, None, salt=0, since=start)
            if len(pos):
                out[pos] = 1.0 / (1.0 + np.exp(-self._logits(images)))
        return pd.DataFrame({self.prediction: out}, index=data.index)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        """P(label = 1) for every row with a full history of bars up to it; NaN before that."""
        return self.predict_from(data, None)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        """Only the last image: serving asks for one bar, not every window of its context."""
        return self.predict(data.iloc[-self.config.history:]).iloc[-1]

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()},
                  str(directory / "weights.safetensors"))
        (directory / "state.json").write_text(json.dumps({
            "label": self.label_, "epochs": self.epochs_, "warm_started": self.warm_started_,
            "valid_loss": self.valid_loss_, "n_train": self.n_train_,
        }, indent=1))

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((directory / "state.json").read_text())
        self.label_, self.epochs_, self.warm_started_ = state["label"], state["epochs"], state["warm_started"]
        self.valid_loss_, self.n_train_ = state["valid_loss"], state["n_train"]
        self.net_ = _net(self.config).to(self._device())
        self.net_.load_state_dict(load_file(str(directory / "weights.safetensors")))
        self.net_.eval()

    # files for a person ----------------------------------------------------------
    def run_files(self, directory: Path, data: pd.DataFrame, rows: pd.DataFrame) -> list[Path]:
        """``chart_samples.png``: up to 16 charts of the last test block, with label and prediction under each."""
        pred = rows[self.prediction]
        picked = rows[pred.notna()]
        if picked.empty:
            return []
        take = np.unique(np.linspace(0, len(picked) - 1, min(SHEET_SAMPLES, len(picked))).round().astype(int))
        picked = picked.iloc[take]
        pos = data.index.get_indexer(picked.index)
        if (pos < 0).any():
            raise TreumError("run_files: some rows of the test block are not in the data it was given")
        bars = Bars.of(data, self.config)
        rank = np.empty(len(bars.order), dtype=int)
        rank[bars.order] = np.arange(len(bars.order))
        images = bars.images(rank[pos], self.config)
        label_col = self.label_ if self.label_ in picked.columns else None
        captions = []
        for (ts, entity), row in zip(picked.index, picked.itertuples(index=False)):
            values = row._asdict()
            y = values.get(label_col) if label_col else None
            y_text = "?" if y is None or not np.isfinite(y) else f"{y:.0f}"
            captions.append((f"{entity} {pd.Timestamp(ts):%Y-%m-%d}", f"y={y_text} p={values[self.prediction]:.3f}"))
        path = Path(directory) / "chart_samples.png"
        sample_sheet(images, captions).save(path)
        return [path]


SHEET_SAMPLES = 16  # charts on the sheet
SHEET_COLUMNS = 4
SHEET_SCALE = 2  # each pixel of a chart becomes SHEET_SCALE x SHEET_SCALE
SHEET_PAD = 6  # pixels around each tile
SHEET_CAPTION = 26  # pixel rows of the two caption lines under each chart


def sheet_size(n: int, height: int, width: int) -> tuple[int, int]:
    """(width, height) in pixels of the sheet of ``n`` charts of ``height`` x ``width`` pixels."""
    cols = min(SHEET_COLUMNS, n)
    lines = -(-n // SHEET_COLUMNS)
    tile_w, tile_h = width * SHEET_SCALE, height * SHEET_SCALE + SHEET_CAPTION
    return cols * (tile_w + SHEET_PAD) + SHEET_PAD, lines * (tile_h + SHEET_PAD) + SHEET_PAD


def sample_sheet(images: np.ndarray, captions: list[tuple[str, str]]) -> Any:
    """A PIL image: the charts in a grid, enlarged ``SHEET_SCALE`` times, two caption lines under each."""
    from PIL import Image, ImageDraw, ImageFont

    n, h, w = images.shape
    sheet = Image.new("L", sheet_size(n, h, w), color=40)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    tile_w, tile_h = w * SHEET_SCALE, h * SHEET_SCALE + SHEET_CAPTION
    for i, (img, lines) in enumerate(zip(images, captions)):
        x = SHEET_PAD + (i % SHEET_COLUMNS) * (tile_w + SHEET_PAD)
        y = SHEET_PAD + (i // SHEET_COLUMNS) * (tile_h + SHEET_PAD)
        sheet.paste(Image.fromarray(img).resize((tile_w, h * SHEET_SCALE), Image.NEAREST), (x, y))
        for k, text in enumerate(lines):
            draw.text((x + 1, y + h * SHEET_SCALE + 1 + 12 * k), text, fill=230, font=font)
    return sheet


class ChartCNNRank(ChartCNN):
    """The chart CNN on the cross_section task: P(the forward return beats the day's median), in ``score``."""

    prediction = "score"

    def label_column(self, data: pd.DataFrame) -> str:
        h = self.config.horizon
        if h is not None:
            task = self.require_task()
            if h != task.config.horizon:
                raise ConfigError(f"model.horizon={h}: the cross_section task labels its own horizon only "
                                  f"(task.horizon={task.config.horizon}); set model.horizon=null or task.horizon={h}")
        if "target_up" not in data.columns:
            raise TreumError(f"{self.spec.name} learns the cross_section task's 'target_up' (beats the day's "
                             "median), which the training data does not have")
        return "target_up"


_CAPS = frozenset({"probabilistic", "multi_asset", "gpu", "online_update", "sequential"})

def _spec(name: str, task: str, factory: type, what: str) -> ModelSpec:
    return ModelSpec(name=name, family="convolutional_network", task=task, capabilities=_CAPS,
                     config_cls=ChartCNNConfig, factory=factory,
                     description=f"CNN (timm, from random weights) on {what}")


ChartCNN.spec = _spec("chart_cnn", "direction", ChartCNN, "OHLC chart images of the last bars, P(up) (Jiang, Kelly, Xiu)")
ChartCNNRank.spec = _spec("chart_cnn_rank", "cross_section", ChartCNNRank,
                          "chart images, P(beats the day's median) as the rank score")


@hookimpl
def treum_models() -> list[ModelSpec]:
    return [ChartCNN.spec, ChartCNNRank.spec]
