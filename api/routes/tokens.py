"""``/tokens``: API tokens (admin only). A new token's secret is in the creation response and nowhere else."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.auth import Forbidden, UnknownToken, create_token, list_tokens, resolve_area, revoke_token
from api.deps import Admin, SessionDep
from api.errors import InvalidRequest
from api.schemas import ERRORS, NOT_FOUND, TokenCreatedOut, TokenIn, TokenOut
from devices.cities import get_city
from lorong.storage.kecamatan import area_kecamatan
from lorong.storage.tables import ApiTokenRow

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=ERRORS)


@router.get("", response_model=list[TokenOut])
def tokens(session: SessionDep, who: Admin) -> list[TokenOut]:
    """Every token, revoked ones included (no secrets); an admin scoped to a city sees that city's."""
    return [TokenOut.model_validate(r, from_attributes=True) for r in list_tokens(session)
            if who.city is None or r.city_id == who.city]


@router.post("", response_model=TokenCreatedOut, status_code=status.HTTP_201_CREATED)
def create(body: TokenIn, session: SessionDep, who: Admin) -> TokenCreatedOut:
    """Create a token; copy ``token`` now, it is not shown again. An admin scoped to a city makes
    tokens of that city (403 for another city or every city). ``kecamatan`` (its area) is matched
    to the registry (to the token's city's devices, when it has a city) without case; a name no such
    device has is a 422 listing the known ones."""
    city = body.city_id if who.city is None else (body.city_id or who.city)
    if not who.sees(city):
        raise Forbidden(f"an admin token of {who.city} makes tokens of {who.city} only")
    if city is not None:
        get_city(session, city)
    known = area_kecamatan(session, city)
    area, unknown = resolve_area(body.kecamatan, known)
    if unknown:
        raise InvalidRequest(f"kecamatan: no device{f' of {city}' if city else ''} is in {', '.join(unknown)}; "
                             f"known kecamatan: {', '.join(known) or 'none yet'}")
    row, secret = create_token(session, body.name, body.role, city=city, area=area)
    session.commit()
    return TokenCreatedOut(**TokenOut.model_validate(row, from_attributes=True).model_dump(), token=secret)


@router.delete("/{token_id}", response_model=TokenOut, responses=NOT_FOUND)
def revoke(token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, who: Admin) -> TokenOut:
    """Revoke a token at once: every API process refuses it from its next request."""
    row = session.get(ApiTokenRow, token_id)
    if row is not None and not who.sees(row.city_id):
        raise UnknownToken(f"no API token with id {token_id}")
    row = revoke_token(session, token_id)
    session.commit()
    return TokenOut.model_validate(row, from_attributes=True)
