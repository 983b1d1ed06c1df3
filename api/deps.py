"""FastAPI dependencies: the objects every route needs, built once in :func:`api.main.create_app`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from storage.influx import InfluxClient


@dataclass
class AppContext:
    """Shared objects of one API process."""

    settings: Settings
    sessions: sessionmaker[Session]
    influx: InfluxClient


def get_context(request: Request) -> AppContext:
    """The app's :class:`AppContext`."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(ctx: Annotated[AppContext, Depends(get_context)]) -> Iterator[Session]:
    """A database session for one request."""
    with ctx.sessions() as session:
        yield session


ContextDep = Annotated[AppContext, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]
