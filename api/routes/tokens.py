"""``/tokens``: API tokens (admin only). A new token's secret is in the creation response and nowhere else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.auth import create_token, list_tokens, resolve_area, revoke_token
from api.deps import Admin, SessionDep
from api.errors import InvalidRequest
from api.query import known_kecamatan
from api.schemas import ERRORS, NOT_FOUND, TokenCreatedOut, TokenIn, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=ERRORS)


@router.get("", response_model=list[TokenOut])
def tokens(session: SessionDep, _who: Admin) -> list[TokenOut]:
    """Every token, revoked ones included (no secrets)."""
    return [TokenOut.model_validate(r, from_attributes=True) for r in list_tokens(session)]


@router.post("", response_model=TokenCreatedOut, status_code=status.HTTP_201_CREATED)
def create(body: TokenIn, session: SessionDep, _who: Admin) -> TokenCreatedOut:
    """Create a token; copy ``token`` now, it is not shown again. ``kecamatan`` (its area) is matched
    to the registry without case; a name no device has is a 422 listing the known ones."""
    known = known_kecamatan(session)
    area, unknown = resolve_area(body.kecamatan, known)
    if unknown:
        raise InvalidRequest(f"kecamatan: no device is in {', '.join(unknown)}; known kecamatan: "
                             f"{', '.join(known) or 'none yet'}")
    row, secret = create_token(session, body.name, body.role, area=area)
    session.commit()
    return TokenCreatedOut(**TokenOut.model_validate(row, from_attributes=True).model_dump(), token=secret)


@router.delete("/{token_id}", response_model=TokenOut, responses=NOT_FOUND)
def revoke(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, _who: Admin) -> TokenOut:
    """Revoke a token at once: every API process refuses it from its next request."""
    row = revoke_token(session, token_id)
    session.commit()
    return TokenOut.model_validate(row, from_attributes=True)
