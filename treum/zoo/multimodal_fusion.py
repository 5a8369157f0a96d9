"""The specification's MultiModalPredictor as a direction model: price, news and macro, fused by attention.

Three encoders, one token each, and a learned query that attends over them:

- **price**: an LSTM over the last ``window`` bars of the price/technical ``f_*`` columns (every
  ``f_*`` column that is neither ``f_macro_*`` nor ``f_news_*``), standardised with the training
  rows' statistics and clipped to ``[-clip, clip]``; its last hidden state, projected, is the token;
- **text**: a small MLP over the day's mean MiniLM headline embedding (``f_news_000`` ..), a
  token only on rows whose ``f_news_mask`` is 1;
- **macro**: a dense encoder of the ``f_macro_*`` values (standardised on the rows where each is
  known, 0 where it is not) and their ``_known`` flags, a token only on rows where a source is known.

A learned query attends (``torch.nn.MultiheadAttention``) over a learned always-present "null"
token and the three modality tokens (each plus a learned modality embedding); a masked token gets
no attention weight. The head (linear, ReLU, dropout, linear) gives the logit of P(up), trained
with binary cross-entropy on ``target`` (ties are NaN and left out), early-stopped on the fold's
``valid`` rows (the best epoch's weights are kept). The feature groups come from the ``multimodal``
feature set (``features=multimodal``); with fewer groups (``features=technical``) the missing
branches are masked and the model says so once (``text_branch_masked_``, ``macro_branch_masked_``):
a branch with no data in the training rows stays masked at prediction too (its encoder never learnt).

``drop`` removes branches (``price``, ``text``, ``macro``): a dropped branch's token is always
masked and its encoder never runs, so the predictions do not depend on its inputs. The ablation
models ``multimodal_fusion_no_price``, ``_no_text`` and ``_no_macro`` are this class with their
branch forced into ``drop``. Every variant builds every encoder in the same order from the same
seed and predicts the same rows (those with a full price window), so their rows on the leaderboard
differ only by what they read: with no news at all, ``multimodal_fusion`` and ``_no_text`` are
the same model and give the same answers.

Seeded and deterministic; weights with safetensors, the column groups and scalers as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from treum.core.early_stopping import EarlyStopping
from treum.core.errors import TreumError
from treum.core.hookspecs import hookimpl
from treum.core.model import Model, feature_columns
from treum.core.specs import ModelSpec

BRANCHES = ("price", "text", "macro")
MACRO_PREFIX = "f_macro_"
NEWS_PREFIX = "f_news_"
NEWS_MASK = "f_news_mask"
KNOWN_SUFFIX = "_known"
TEXT_DIM = 384  # MiniLM's embedding size (treum.zoo.text_encoder.EMBEDDING_DIM)

log = logging.getLogger(__name__)
_SAID: set[str] = set()  # what this process has already said (each masked-branch notice once)


def say_once(message: str) -> None:
    """A warning logged once per process, not once per walk-forward fold."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)


@dataclass
class MultimodalFusionConfig:
    window: int = 20  # bars of price features the LSTM reads
    hidden: int = 16  # LSTM hidden size (the specification: 128)
    lstm_layers: int = 1
    text_hidden: int = 32  # the text MLP's hidden width
    macro_hidden: int = 16  # the macro encoder's hidden width
    d_model: int = 16  # the width of each modality token
    n_heads: int = 2
    head_hidden: int = 16  # the prediction head's hidden width (the specification: 256)
    dropout: float = 0.1
    lr: float = 0.003
    weight_decay: float = 0.0001
    batch_size: int = 512
    max_epochs: int = 3
    patience: int = 1  # epochs without a lower validation loss before stopping
    clip: float = 5.0  # standardised inputs are clipped to [-clip, clip]
    drop: list[Literal["price", "text", "macro"]] = field(default_factory=list)  # branches removed (ablation)
    seed: int = 0
    num_threads: int = 1  # tiny matrices: one thread beats two that wait on each other
    accelerator: Literal["cpu", "auto"] = "cpu"  # auto: a GPU when there is one

    def validate(self) -> str | None:
        if self.window < 2:
            return f"window must be at least 2 bars, got {self.window}"
        for key in ("hidden", "lstm_layers", "text_hidden", "macro_hidden", "d_model", "n_heads", "head_hidden",
                    "batch_size", "max_epochs", "patience", "num_threads"):
            if getattr(self, key) < 1:
                return f"{key} must be at least 1, got {getattr(self, key)}"
        if self.d_model % self.n_heads:
            return f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
        if not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), got {self.dropout}"
        if self.lr <= 0 or self.weight_decay < 0 or self.clip <= 0:
            return "lr and clip must be positive and weight_decay at least 0"
        if len(set(self.drop)) != len(self.drop):
            return f"drop names a branch twice: {self.drop}"
        if set(self.drop) >= set(BRANCHES):
            return f"drop removes every branch ({self.drop}); keep at least one of {list(BRANCHES)}"
        return None


def column_groups(columns: list[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """(price, macro values, macro flags, news embedding) among the ``f_*`` columns."""
    feats = [c for c in columns if c.startswith("f_")]
    news = sorted(c for c in feats if c.startswith(NEWS_PREFIX) and c[len(NEWS_PREFIX):].isdigit())
    macro = [c for c in feats if c.startswith(MACRO_PREFIX)]
    flags = [c for c in macro if c.endswith(KNOWN_SUFFIX)]
    values = [c for c in macro if not c.endswith(KNOWN_SUFFIX)]
    price = [c for c in feats if not c.startswith(MACRO_PREFIX) and not c.startswith(NEWS_PREFIX)]
    return price, values, flags, news


def flag_of(column: str, flags: list[str]) -> str | None:
    """The ``_known`` flag that covers a macro value column (the longest flag prefix it starts with)."""
    best = None
    for f in flags:
        stem = f[: -len(KNOWN_SUFFIX)]
        if column.startswith(stem) and (best is None or len(stem) > len(best[: -len(KNOWN_SUFFIX)])):
            best = f
    return best


def _network(n_price: int, n_macro: int, cfg: MultimodalFusionConfig) -> Any:
    import torch
    from torch import nn

    class MultiModalPredictor(nn.Module):
        """Price LSTM, text MLP, macro MLP -> tokens -> a learned query's attention -> P(up) logit."""

        def __init__(self) -> None:
            super().__init__()
            self.price_encoder = nn.LSTM(n_price, cfg.hidden, cfg.lstm_layers, batch_first=True,
                                         dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
            self.price_proj = nn.Linear(cfg.hidden, cfg.d_model)
            self.text_encoder = nn.Sequential(nn.Linear(TEXT_DIM, cfg.text_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                              nn.Linear(cfg.text_hidden, cfg.d_model))
            self.macro_encoder = nn.Sequential(nn.Linear(max(n_macro, 1), cfg.macro_hidden), nn.ReLU(),
                                               nn.Dropout(cfg.dropout), nn.Linear(cfg.macro_hidden, cfg.d_model))
            self.null_token = nn.Parameter(torch.zeros(cfg.d_model))
            self.modality = nn.Parameter(torch.randn(4, cfg.d_model) * 0.02)  # null, price, text, macro
            self.query = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
            self.fusion = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
            self.norm = nn.LayerNorm(cfg.d_model)
            self.predictor = nn.Sequential(nn.Linear(cfg.d_model, cfg.head_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                           nn.Linear(cfg.head_hidden, 1))

        def forward(self, price: Any, text: Any, macro: Any, use: Any) -> tuple[Any, Any]:
            """``use`` (batch, 4) bool: which tokens may be attended (null, price, text, macro).

            An input that is None (a branch dropped or without data) is never encoded; its token is 0.
            """
            b = use.shape[0]
            zero = torch.zeros(b, cfg.d_model, device=use.device)
            p = self.price_proj(self.price_encoder(price)[0][:, -1]) if price is not None else zero
            t = self.text_encoder(text) if text is not None else zero
            m = self.macro_encoder(macro) if macro is not None else zero
            tokens = torch.stack([self.null_token.expand(b, -1), p, t, m], dim=1) + self.modality
            fused, weights = self.fusion(self.query.expand(b, -1, -1), tokens, tokens, key_padding_mask=~use,
                                         need_weights=True)
            return self.predictor(self.norm(fused[:, 0])).squeeze(-1), weights[:, 0]

    return MultiModalPredictor()


@dataclass
class Batch:
    """The model's inputs for a set of rows (the rows with a full price window)."""

    rows: np.ndarray  # positions in the frame
    price: np.ndarray  # (n, window, n_price)
    text: np.ndarray | None  # (n, TEXT_DIM) or None when the branch is inactive
    macro: np.ndarray | None  # (n, n_macro_inputs) or None when the branch is inactive
    use: np.ndarray  # (n, 4) bool

    def take(self, idx: np.ndarray) -> "Batch":
        return Batch(self.rows[idx], self.price[idx], None if self.text is None else self.text[idx],
                     None if self.macro is None else self.macro[idx], self.use[idx])


class MultimodalFusion(Model):
    """The MultiModalPredictor of the specification on the direction task (see the module doc)."""

    def __init__(self, config: MultimodalFusionConfig, spec: ModelSpec | None = None):
        super().__init__(config)
        if spec is not None:
            self.spec = spec  # an ablation variant: the same class under its own registered name

    # inputs --------------------------------------------------------------------------------
    def _active(self) -> dict[str, bool]:
        drop = set(self.config.drop)
        return {"price": "price" not in drop, "text": "text" not in drop and not self.text_branch_masked_,
                "macro": "macro" not in drop and not self.macro_branch_masked_}

    def _macro_matrix(self, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(standardised macro values and flags, 0 where unknown; per-row 'some source known')."""
        n = len(data)
        cols = self.macro_cols_
        vals = np.zeros((n, len(cols)), dtype=float)
        known = np.zeros((n, len(cols)), dtype=bool)
        for j, c in enumerate(cols):
            v = data[c].to_numpy(dtype=float) if c in data.columns else np.full(n, np.nan)
            ok = np.isfinite(v)
            flag = self.macro_flag_of_.get(c)
            if flag is not None:
                ok &= (data[flag].to_numpy(dtype=float) > 0.5) if flag in data.columns else False
            known[:, j] = ok
            vals[:, j] = np.where(ok, np.clip((v - self.macro_mean_[j]) / self.macro_std_[j], -self.config.clip,
                                              self.config.clip), 0.0)
        flags = known.astype(float)  # what the encoder is told is real (one flag per value column)
        return np.concatenate([vals, flags], axis=1).astype(np.float32), known.any(axis=1)

    def _batch(self, data: pd.DataFrame, since: Any = None, rows_of_interest: np.ndarray | None = None) -> Batch:
        """Inputs of every row with a full finite price window (of those at or after ``since``)."""
        cfg = self.config
        w = cfg.window
        missing = [c for c in self.price_cols_ if c not in data.columns]
        if missing:
            raise TreumError(f"{self.spec.name} was fitted on the price features {missing[:3]}..., which the data "
                             "lacks; compute the same feature set as at fit")
        x_all = ((data[self.price_cols_].to_numpy(dtype=float) - self.price_mean_) / self.price_std_)
        x_all = np.clip(x_all, -cfg.clip, cfg.clip).astype(np.float32)
        ts = data.index.get_level_values("timestamp")
        ent = data.index.get_level_values("entity")
        positions, windows = [], []
        for _, idx in pd.Series(np.arange(len(data))).groupby(np.asarray(ent), sort=False).indices.items():
            rows = np.sort(idx)
            if len(rows) < w:
                continue
            block = x_all[rows]
            view = np.lib.stride_tricks.sliding_window_view(block, (w, block.shape[1]))[:, 0]
            ends = rows[w - 1:]
            ok = np.isfinite(view).all(axis=(1, 2))
            if since is not None:
                ok &= np.asarray(ts[ends] >= since)
            positions.append(ends[ok])
            windows.append(view[ok])
        n_price = len(self.price_cols_)
        if positions:
            pos = np.concatenate(positions)
            price = np.concatenate(windows) if len(pos) else np.zeros((0, w, n_price), dtype=np.float32)
        else:
            pos, price = np.zeros(0, dtype=int), np.zeros((0, w, n_price), dtype=np.float32)
        active = self._active()
        use = np.zeros((len(pos), 4), dtype=bool)
        use[:, 0] = True
        use[:, 1] = active["price"]
        text = macro = None
        if active["text"]:
            have = [c for c in self.news_cols_ if c in data.columns]
            mask = data[NEWS_MASK].to_numpy(dtype=float)[pos] > 0.5 if NEWS_MASK in data.columns else \
                np.zeros(len(pos), dtype=bool)
            if len(have) == len(self.news_cols_):
                text = np.nan_to_num(data[self.news_cols_].to_numpy(dtype=np.float32)[pos])
            else:  # the news columns are gone (a feature set without news): no token
                text, mask = np.zeros((len(pos), TEXT_DIM), dtype=np.float32), np.zeros(len(pos), dtype=bool)
            use[:, 2] = mask
        if active["macro"]:
            matrix, any_known = self._macro_matrix(data.iloc[pos])
            macro = matrix
            use[:, 3] = any_known
        return Batch(pos, price, text, macro, use)

    def _device(self) -> Any:
        import torch

        if self.config.accelerator == "auto" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def _tensors(self, b: Batch, dev: Any) -> tuple[Any, Any, Any, Any]:
        import torch

        active = self._active()
        price = torch.as_tensor(b.price, device=dev) if active["price"] else None
        text = torch.as_tensor(b.text, device=dev) if b.text is not None else None
        macro = torch.as_tensor(b.macro, device=dev) if b.macro is not None else None
        return price, text, macro, torch.as_tensor(b.use, device=dev)

    def _forward(self, b: Batch, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(logits, attention weights over the 4 tokens) of every row of the batch, in eval mode."""
        import torch

        dev = self._device()
        self.net_.eval()
        logits, weights = [], []
        with torch.no_grad():
            for s in range(0, len(b.rows), chunk):
                part = b.take(np.arange(s, min(s + chunk, len(b.rows))))
                z, a = self.net_(*self._tensors(part, dev))
                logits.append(z.double().cpu().numpy())
                weights.append(a.double().cpu().numpy())
        if not logits:
            return np.zeros(0), np.zeros((0, 4))
        return np.concatenate(logits), np.concatenate(weights)

    # the contract ----------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, valid: pd.DataFrame | None = None) -> None:
        import torch

        cfg = self.config
        name = self.spec.name
        if "target" not in data.columns:
            raise TreumError(f"{name} trains on the direction task's 'target' column, which the training data lacks")
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        dev = self._device()
        if dev.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        price, macro, flags, news = column_groups(feature_columns(data))
        if not price:
            raise TreumError(f"{name} reads price features (f_* columns other than f_macro_* and f_news_*) and the "
                             "data has none; add features=multimodal (or features=technical)")
        self.price_cols_, self.macro_cols_, self.news_cols_ = price, macro, news
        self.macro_flag_of_ = {c: flag_of(c, flags) for c in macro}
        x = data[price].to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN warm-up column
            self.price_mean_ = np.nan_to_num(np.nanmean(x, axis=0))
            self.price_std_ = np.nanstd(x, axis=0)
        self.price_std_[~np.isfinite(self.price_std_) | (self.price_std_ == 0)] = 1.0
        # the macro scalers from the rows where each value is known
        self.macro_mean_, self.macro_std_ = np.zeros(len(macro)), np.ones(len(macro))
        known_any = np.zeros(len(data), dtype=bool)
        for j, c in enumerate(macro):
            v = data[c].to_numpy(dtype=float)
            ok = np.isfinite(v)
            flag = self.macro_flag_of_[c]
            if flag is not None:
                ok &= data[flag].to_numpy(dtype=float) > 0.5
            known_any |= ok
            if ok.sum() >= 2:
                self.macro_mean_[j] = v[ok].mean()
                sd = v[ok].std()
                self.macro_std_[j] = sd if np.isfinite(sd) and sd > 0 else 1.0
        has_news = bool(news) and NEWS_MASK in data.columns and bool((data[NEWS_MASK].to_numpy(dtype=float) > 0.5).any())
        self.text_branch_masked_ = not has_news
        self.macro_branch_masked_ = not bool(macro) or not bool(known_any.any())
        if self.text_branch_masked_ and "text" not in cfg.drop:
            say_once(f"{name}: no news in the training rows (no f_news_* columns with f_news_mask 1: "
                     "features=multimodal with features.news_path=<headlines.csv> adds them); the text branch is masked")
        if self.macro_branch_masked_ and "macro" not in cfg.drop:
            say_once(f"{name}: no macro features known in the training rows (f_macro_*: features=multimodal adds "
                     "them); the macro branch is masked")
        active = self._active()
        if not any(active.values()):
            say_once(f"{name}: every branch is dropped or masked (drop={cfg.drop}, no news, no macro features); it "
                     "answers the training rows' share of up days through its bias alone")

        train = self._batch(data)
        y = data["target"].to_numpy(dtype=float)[train.rows]
        keep = np.isfinite(y)
        train, y = train.take(np.flatnonzero(keep)), y[keep].astype(np.float32)
        if len(y) < 50:
            raise TreumError(f"{name} needs at least 50 labelled rows with a full {cfg.window}-bar window of price "
                             f"features, got {len(y)}")
        vb, vy = None, None
        if valid is not None and len(valid) and "target" in valid.columns:
            context = pd.concat([data, valid]).sort_index()  # the valid rows' windows reach back into train
            vb = self._batch(context, since=valid.index.get_level_values("timestamp").min())
            vy = context["target"].to_numpy(dtype=float)[vb.rows]
            ok = np.isfinite(vy)
            vb, vy = vb.take(np.flatnonzero(ok)), vy[ok]
            if not len(vy):
                vb = vy = None

        self.net_ = _network(len(price), 2 * len(macro), cfg).to(dev)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(cfg.seed)
        stopper = EarlyStopping(cfg.patience, min_delta=1e-6)
        self.epochs_ = 0
        yt = torch.as_tensor(y, device=dev)
        for epoch in range(cfg.max_epochs):
            self.net_.train()
            order = torch.randperm(len(y), generator=gen).numpy()
            for s in range(0, len(y), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                logit, _ = self.net_(*self._tensors(train.take(idx), dev))
                loss = loss_fn(logit, yt[torch.as_tensor(idx, device=dev)])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epochs_ = epoch + 1
            if vb is None:
                continue
            z, _ = self._forward(vb)
            p = np.clip(1 / (1 + np.exp(-z)), 1e-7, 1 - 1e-7)
            vloss = float(-np.mean(vy * np.log(p) + (1 - vy) * np.log(1 - p)))
            if stopper.step(vloss, self.net_):
                break
        stopper.restore(self.net_)
        self.valid_loss_ = stopper.best_or_none
        self.net_.eval()

    def _predict(self, data: pd.DataFrame, since: Any = None) -> pd.DataFrame:
        b = self._batch(data, since=since)
        out = np.full(len(data), np.nan)
        if len(b.rows):
            z, _ = self._forward(b)
            out[b.rows] = 1.0 / (1.0 + np.exp(-z))
        return pd.DataFrame({"p_up": out}, index=data.index)

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        """P(up) for each row with a full window of price features; NaN in each entity's warm-up."""
        return self._predict(data)

    def predict_from(self, data: pd.DataFrame, start: Any) -> pd.DataFrame:
        """Only the rows at or after ``start`` are answered (the earlier ones are the windows' context)."""
        return self._predict(data, since=start)

    def predict_last(self, data: pd.DataFrame) -> pd.Series:
        """Only the last window: serving asks for one bar."""
        return self._predict(data.iloc[-self.config.window:]).iloc[-1]

    def attention(self, data: pd.DataFrame) -> pd.DataFrame:
        """The fusion's attention weights over the tokens (null, price, text, macro) for each answered row."""
        b = self._batch(data)
        _, weights = self._forward(b)
        return pd.DataFrame(weights, index=data.index[b.rows], columns=["null", "price", "text", "macro"])

    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()},
                  str(directory / "weights.safetensors"))
        (directory / "state.json").write_text(json.dumps({
            "price": self.price_cols_, "macro": self.macro_cols_, "news": self.news_cols_,
            "macro_flag_of": self.macro_flag_of_,
            "price_mean": self.price_mean_.tolist(), "price_std": self.price_std_.tolist(),
            "macro_mean": self.macro_mean_.tolist(), "macro_std": self.macro_std_.tolist(),
            "text_branch_masked": self.text_branch_masked_, "macro_branch_masked": self.macro_branch_masked_,
            "epochs": self.epochs_, "valid_loss": self.valid_loss_,
        }, indent=1))

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        s = json.loads((directory / "state.json").read_text())
        self.price_cols_, self.macro_cols_, self.news_cols_ = s["price"], s["macro"], s["news"]
        self.macro_flag_of_ = s["macro_flag_of"]
        self.price_mean_, self.price_std_ = np.asarray(s["price_mean"]), np.asarray(s["price_std"])
        self.macro_mean_, self.macro_std_ = np.asarray(s["macro_mean"]), np.asarray(s["macro_std"])
        self.text_branch_masked_, self.macro_branch_masked_ = s["text_branch_masked"], s["macro_branch_masked"]
        self.epochs_, self.valid_loss_ = s["epochs"], s["valid_loss"]
        self.net_ = _network(len(self.price_cols_), 2 * len(self.macro_cols_), self.config).to(self._device())
        self.net_.load_state_dict(load_file(str(directory / "weights.safetensors")))
        self.net_.eval()


CAPABILITIES = frozenset({"multi_asset", "sequential", "uses_features", "gpu", "probabilistic"})


def _variant(name: str, forced: str | None, description: str) -> ModelSpec:
    """The spec of the fusion or of one ablation: the same class, with ``forced`` always in ``drop``."""
    holder: dict[str, ModelSpec] = {}

    def factory(config: MultimodalFusionConfig) -> MultimodalFusion:
        if forced is not None and forced not in config.drop:
            config = dataclasses.replace(config, drop=[*config.drop, forced])
            problem = config.validate()
            if problem:
                raise TreumError(f"model '{name}': {problem}")
        return MultimodalFusion(config, holder["spec"])

    # without its price branch, on a feature set with neither news nor macro (features=technical, the
    # contract's example) the ablation has no input left and answers one constant: it does not claim
    # 'probabilistic' (answers that vary), which the contract checks
    caps = CAPABILITIES - {"probabilistic"} if forced == "price" else CAPABILITIES
    holder["spec"] = ModelSpec(name=name, family="multimodal", task="direction", capabilities=caps,
                               config_cls=MultimodalFusionConfig, factory=factory, description=description,
                               ablation_of=None if forced is None else "multimodal_fusion")
    return holder["spec"]


SPECS = [
    _variant("multimodal_fusion", None, "the specification's MultiModalPredictor: LSTM over price features, MLP over "
             "the day's MiniLM headline embedding, dense macro encoder, attention fusion, P(up)"),
    _variant("multimodal_fusion_no_price", "price", "multimodal_fusion without its price branch (ablation)"),
    _variant("multimodal_fusion_no_text", "text", "multimodal_fusion without its text branch (ablation)"),
    _variant("multimodal_fusion_no_macro", "macro", "multimodal_fusion without its macro branch (ablation)"),
]
MultimodalFusion.spec = SPECS[0]


@hookimpl
def treum_models() -> list[ModelSpec]:
    return list(SPECS)
