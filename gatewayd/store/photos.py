"""The photo gallery's rows (issue 13, manual 1.8): one per stored image, its files named by id under
``[panel] gallery_dir``. ``token`` is the unguessable part of its public link (``/p/{token}``); a
deleted photo keeps its row (``deleted_at``) for the audit trail, its files are removed and its link
answers 404."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gatewayd.store.base import Base

TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)
ALBUM_LENGTH = 64
NAME_LENGTH = 200


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(TOKEN_LENGTH), unique=True)
    album: Mapped[str] = mapped_column(String(ALBUM_LENGTH), index=True)
    original_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    content_type: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column()
    width: Mapped[int] = mapped_column()
    height: Mapped[int] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


async def live_photo(session: AsyncSession, token: str) -> Photo | None:
    """The photo a public link names, None when there is none or it was deleted."""
    if len(token) != TOKEN_LENGTH:
        return None
    return await session.scalar(select(Photo).where(Photo.token == token, Photo.deleted_at.is_(None)))


async def recent_photos(session: AsyncSession, limit: int) -> list[Photo]:
    """The latest photos not deleted, newest first."""
    statement = select(Photo).where(Photo.deleted_at.is_(None)).order_by(Photo.id.desc()).limit(limit)
    return list((await session.scalars(statement)).all())
