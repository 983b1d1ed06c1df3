"""``/alerts``: open alerts."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from analytics.alerts import snapshot
from api.deps import SessionDep
from api.schemas import AlertOut
from storage.tables import AlertRow

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=list[AlertOut])
def alerts(session: SessionDep, status: str = "active", type: str | None = None) -> list[AlertOut]:
    """Alerts, newest first; ``status`` active (default) or cleared."""
    q = select(AlertRow).where(AlertRow.status == status).order_by(AlertRow.started_at.desc(), AlertRow.id.desc())
    if type:
        q = q.where(AlertRow.type == type)
    return [AlertOut.model_validate(snapshot(r)) for r in session.scalars(q)]
