"""Sentiment over HTTP and the CLI: texts and documents scored by the deployed sentiment model.

- ``POST /api/v1/ml/predict/sentiment`` (the specification's route): ``{"text": ...}``,
  ``{"texts": [...]}`` or ``{"document": ...}``; answers class probabilities per text (for a
  document: per sentence, with the document's tone and the sentences that drive it) and the
  model version. Each text's answer is logged in ``ml_predictions`` under the text's SHA-256,
  never the text itself.
- ``treum sentiment FILE...`` scores text files as documents (or ``--lines``: one text a line)
  with the deployed model, or ``--model NAME`` when several are deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from treum.core.corpus import DOC_INDEX
from treum.core.errors import DataValidationError, TreumError, UnavailableError
from treum.core.hookspecs import hookimpl
from treum.core.specs import CommandSpec, ServeRouteSpec
from treum.plugins.tasks.sentiment import COLUMNS
from treum.plugins.tasks.sentiment_documents import MAX_SENTENCES, document_corpus, score_document
from treum.serve.bars import RequestError

log = logging.getLogger(__name__)
TASK = "sentiment"
MAX_TEXTS = 256
MAX_CHARS = 5_000  # one text
MAX_DOCUMENT_CHARS = 200_000


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=MAX_CHARS, description="one text")
    texts: list[str] | None = Field(default=None, min_length=1, max_length=MAX_TEXTS,
                                    description=f"up to {MAX_TEXTS} texts, answered in order")
    document: str | None = Field(default=None, min_length=1, max_length=MAX_DOCUMENT_CHARS,
                                 description="a long text (a transcript): split into sentences, scored, aggregated")
    top: int = Field(default=5, ge=0, le=50, description="a document's driving sentences to return")

    @model_validator(mode="after")
    def _one_input(self) -> "SentimentRequest":
        given = [k for k in ("text", "texts", "document") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, texts or document (got {', '.join(given) or 'none'})")
        if self.texts is not None:
            for i, t in enumerate(self.texts):
                if not t.strip():
                    raise ValueError(f"texts[{i}] is empty")
                if len(t) > MAX_CHARS:
                    raise ValueError(f"texts[{i}] has {len(t):,} characters; at most {MAX_CHARS:,} (send long "
                                     "text as a document)")
        elif self.text is not None and not self.text.strip():
            raise ValueError("text is empty")
        return self


def _frame(texts: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"text": texts})
    frame.index = pd.RangeIndex(len(frame), name=DOC_INDEX)
    return frame


def _rows(proba: pd.DataFrame, task: Any) -> list[dict[str, Any]]:
    out = []
    for values in proba[list(COLUMNS)].to_dict("records"):
        out.append({"label": task.label(values), "tone": round(float(values["p_positive"] - values["p_negative"]), 4),
                    "probabilities": {c[2:]: round(float(values[c]), 4) for c in COLUMNS}})
    return out


def answer(model: Any, task: Any, body: SentimentRequest) -> tuple[dict[str, Any], list[str], pd.DataFrame]:
    """(the answer, the texts scored, their probabilities): the work the route and the CLI share."""
    if body.document is not None:
        corpus = document_corpus(body.document)
        proba = model.predict(corpus)
        texts = corpus["text"].tolist()
        from treum.plugins.tasks.sentiment_documents import aggregate

        doc = aggregate(texts, proba, top=body.top)
        return {"document": doc, "sentences": [{"text": t, **r} for t, r in zip(texts, _rows(proba, task))]}, texts, proba
    texts = [body.text] if body.text is not None else list(body.texts or [])
    proba = model.predict(_frame(texts))
    return {"results": [{"text": t, **r} for t, r in zip(texts, _rows(proba, task))]}, texts, proba


async def sentiment_endpoint(body: SentimentRequest, request: Request) -> dict[str, Any]:
    """Class probabilities of texts, or of a document's sentences with its tone, from the deployed sentiment model.

    The scoring runs off the event loop and within ``serve.request_timeout_s`` (a 504 past it), as
    the other predict routes do. Each text (or sentence) gets its own ``prediction_id``, to which its
    outcome (-1, 0 or 1) can be posted.
    """
    service = request.app.state.get_service()
    if service is None:
        raise UnavailableError("the service is starting; retry in a moment")
    live = service.model_for_task(TASK)
    if live.model is None or live.task is None:
        raise UnavailableError(f"the deployed {live.label} is not loaded in this process: {live.error or 'remote'}")
    start = time.perf_counter()
    timeout = float(service.settings.request_timeout_s)
    try:
        out, texts, proba = await asyncio.wait_for(asyncio.to_thread(answer, live.model, live.task, body), timeout)
    except asyncio.TimeoutError:
        raise RequestError(504, f"no answer within serve.request_timeout_s = {timeout:g} s; send fewer texts or a "
                                "shorter document") from None
    except DataValidationError:
        raise
    except Exception as exc:  # the model failed on the texts: not the caller's fault, and no traceback
        log.warning("%s failed on a sentiment request", live.label, exc_info=True)
        raise UnavailableError(f"{live.label} could not score the texts: {type(exc).__name__}") from exc
    elapsed = (time.perf_counter() - start) * 1000
    request_id = str(uuid.uuid4())
    rows = out["sentences"] if "sentences" in out else out["results"]
    for i, (text, values, row) in enumerate(zip(texts, proba[list(COLUMNS)].to_dict("records"), rows)):
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        fields = live.task.log_fields(values)
        row["prediction_id"] = f"{request_id}:{i}"
        service.log.prediction(
            model_id=uuid.UUID(live.id), prediction_id=row["prediction_id"],
            input_features={"task": TASK, "text_sha256": digest, "chars": len(text),
                            "kind": "document_sentence" if body.document is not None else "text"},
            prediction_value=fields["prediction_value"], prediction_probability=fields["prediction_probability"],
            prediction_class=fields["prediction_class"], entity_type="text", entity_id=digest[:32],
            inference_time_ms=int(round(elapsed / max(len(texts), 1))), model_version=live.version)
    return {"model": live.name, "version": live.version, "request_id": request_id,
            "timing_ms": round(elapsed, 1), **out}


@hookimpl
def treum_serve_routes() -> list[ServeRouteSpec]:
    return [ServeRouteSpec(
        "predict-sentiment", "/predict/sentiment", sentiment_endpoint, ("POST",), scope="predict",
        example={"json": {"texts": ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the same period.",
                                    "The company swung to a net loss and cut its dividend.",
                                    "The annual general meeting will be held in Helsinki on 3 April."]}},
        shows=("model", "version", "results"), task=TASK,
    )]


# the CLI -------------------------------------------------------------------------------------
def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="text files: each a document (a transcript, a report)")
    parser.add_argument("--lines", action="store_true", help="score each line of the files as a text of its own")
    parser.add_argument("--model", help="the deployed sentiment model to use (when several are deployed)")
    parser.add_argument("--top", type=int, default=5, help="a document's driving sentences to show")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")


def _run(args: argparse.Namespace, host: Any) -> int:
    import json

    from rich.console import Console

    console = Console()
    if args.top < 0:
        raise TreumError(f"--top must be 0 or more, got {args.top}")
    deployed = host.deployed(TASK, args.model)
    answers = []
    for path in args.files:
        if not path.is_file():
            raise TreumError(f"{path}: no such file")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TreumError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        if args.lines:
            texts = [line.strip() for line in text.splitlines() if line.strip()]
            if not texts:
                raise TreumError(f"{path}: no text on any line")
            proba = _scored(deployed, lambda texts=texts: deployed.model.predict(_frame(texts)))
            answers.append({"file": str(path), "results": [{"text": t, **r} for t, r in
                                                           zip(texts, _rows(proba, deployed.task))]})
        else:
            if len(text) > MAX_DOCUMENT_CHARS * 10:
                raise TreumError(f"{path}: {len(text):,} characters; split it (at most {MAX_SENTENCES:,} sentences)")
            doc = _scored(deployed, lambda text=text: score_document(deployed.model, text, top=args.top))
            answers.append({"file": str(path), **doc})
    if args.json:
        print(json.dumps({"model": deployed.name, "version": deployed.version, "answers": answers}, indent=2))
        return 0
    for a in answers:
        if "results" in a:
            console.print(f"[bold]{a['file']}[/] ({deployed.name} v{deployed.version})")
            for r in a["results"]:
                console.print(f"  {r['label']:8s} tone {r['tone']:+.2f}  {r['text'][:100]}")
            continue
        console.print(f"[bold]{a['file']}[/]: tone {a['tone']:+.3f} ({a['label']}), {a['sentences_scored']} of "
                      f"{a['sentences']} sentences scored; shares {a['shares']} ({deployed.name} v{deployed.version})")
        for title, rows in (("drivers", a["drivers"]), ("counterpoints", a["counterpoints"])):
            if rows:
                console.print(f"  {title}:")
                for r in rows:
                    console.print(f"    #{r['sentence']:<4d} {r['tone']:+.2f}  {r['text'][:110]}")
    return 0


def _scored(deployed: Any, work: Any) -> Any:
    """The model's work, its failure as one line (what failed and with which version), never a traceback."""
    try:
        return work()
    except DataValidationError as exc:
        raise TreumError(str(exc)) from None
    except Exception as exc:
        raise TreumError(f"{deployed.name} v{deployed.version} could not score the text: {type(exc).__name__}: "
                         f"{exc}") from None


@hookimpl
def treum_commands() -> list[CommandSpec]:
    return [CommandSpec("sentiment", "score text files (documents, or one text a line) with the deployed sentiment "
                        "model", _configure, _run)]
