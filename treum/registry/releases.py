"""Release reports as registry records: one per tag, written once, with an audit row in the same transaction."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treum.core.errors import NotFoundError, RegistryError
from treum.registry import audit
from treum.registry.schema import ModelDeployment, ReleaseReport
from treum.registry.values import clean_json

MAX_TAG = 100


TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_tag(tag: str) -> str:
    """A release tag: 1-100 ASCII letters, digits, '.', '_' and '-', not starting with a dot (it names a folder)."""
    tag = (tag or "").strip()
    if not TAG.fullmatch(tag):
        raise RegistryError(f"release tag {tag!r} is not valid: use 1-{MAX_TAG} letters, digits, '.', '_' or '-' "
                            "(e.g. release=2026-12-01)")
    return tag


def record(s: Session, tag: str, document: dict[str, Any], models: list[dict[str, Any]], html_sha256: str,
           actor: str) -> ReleaseReport:
    """Store a release's report; a tag already used is refused (a release is reported once)."""
    tag = check_tag(tag)
    if s.execute(select(ReleaseReport.id).where(ReleaseReport.release == tag)).first() is not None:
        raise RegistryError(f"release '{tag}' already has a report; show it with `treum report show {tag}` "
                            "or choose another tag")
    row = ReleaseReport(release=tag, created_by=actor, models=clean_json(models), document=clean_json(document),
                        html_sha256=html_sha256)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # another report of this tag committed between the check and here
        raise RegistryError(f"release '{tag}' already has a report; show it with `treum report show {tag}`") from None
    audit.append(s, actor, "report", "release", tag,
                 {"models": [f"{m['name']} v{m['version']}" for m in models], "html_sha256": html_sha256})
    return row


def get(s: Session, tag: str) -> ReleaseReport:
    row = s.execute(select(ReleaseReport).where(ReleaseReport.release == tag)).scalar_one_or_none()
    if row is None:
        known = list(s.execute(select(ReleaseReport.release).order_by(ReleaseReport.created_at.desc()).limit(5)).scalars())
        hint = f"; recent: {', '.join(known)}" if known else "; none has been written (treum report release=TAG)"
        raise NotFoundError(f"no report for release '{tag}'{hint}")
    return row


def listing(s: Session) -> list[ReleaseReport]:
    return list(s.execute(select(ReleaseReport).order_by(ReleaseReport.created_at.desc())).scalars())


def deployment_history(s: Session, names: list[str], limit: int = 50) -> list[ModelDeployment]:
    """The latest changes of what is live for ``names``: who deployed what, when, why, forced or not."""
    if not names:
        return []
    rows = s.execute(select(ModelDeployment).where(ModelDeployment.model_name.in_(names))
                     .order_by(ModelDeployment.created_at.desc(), ModelDeployment.id.desc()).limit(limit)).scalars()
    return list(rows)
