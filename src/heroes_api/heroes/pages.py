"""Pages of heroes, ordered by id: many pages, one statement.

A page is ``ORDER BY id LIMIT :limit OFFSET :offset``. A batch of pages is one statement whose
rows carry their page's position ``k``; its shape depends only on the batch size, so SQLAlchemy
compiles it once and the database plans it cheaply:

- PostgreSQL: ``unnest`` the pages' positions, offsets and limits as three array parameters and
  run the page query ``LATERAL`` for each: one statement text for every batch size;
- SQLite (no LATERAL, and a ``LIMIT`` cannot name an outer column): a ``UNION ALL`` of the page
  queries, at most 500 terms a statement (SQLite's compound-SELECT limit), cached per size.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, column, func, literal, true, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes.service import HERO, HERO_PUBLIC, PublicHero

MAX_UNION_TERMS = 500  # SQLite's SQLITE_MAX_COMPOUND_SELECT


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int


def _page_query(offset: Any, limit: Any) -> Any:
    return select(*HERO_PUBLIC).order_by(HERO.c.id).offset(offset).limit(limit)


_ONE_PAGE = _page_query(bindparam("offset"), bindparam("limit"))


def _lateral_pages() -> Any:
    pages = (
        func.unnest(
            bindparam("k", type_=ARRAY(Integer)),
            bindparam("offset", type_=ARRAY(BigInteger)),
            bindparam("limit", type_=ARRAY(Integer)),
        )
        .table_valued(column("k", Integer), column("offset", BigInteger), column("limit", Integer))
        .render_derived()
    )
    rows = _page_query(pages.c.offset, pages.c.limit).lateral()
    return select(pages.c.k, rows.c.id, rows.c.name, rows.c.age).select_from(
        pages.join(rows, true())
    )


_LATERAL_PAGES = _lateral_pages()


@lru_cache(maxsize=MAX_UNION_TERMS)
def _union_of_pages(size: int) -> Any:
    parts = []
    for k in range(size):
        rows = _page_query(bindparam(f"o{k}"), bindparam(f"l{k}")).subquery()
        parts.append(select(literal(k).label("k"), rows.c.id, rows.c.name, rows.c.age))
    union = union_all(*parts).subquery()
    return select(union.c.k, union.c.id, union.c.name, union.c.age)


async def list_pages(session: AsyncSession, pages: Sequence[Page]) -> list[list[PublicHero]]:
    """Each page's heroes, ordered by id."""
    if len(pages) == 1:
        params = {"offset": pages[0].offset, "limit": pages[0].limit}
        rows = await session.exec(_ONE_PAGE, params=params)
        return [[{"id": hero_id, "name": name, "age": age} for hero_id, name, age in rows]]
    results: list[list[PublicHero]] = [[] for _ in pages]
    for k, hero_id, name, age in await _tagged_rows(session, pages):
        results[k].append({"id": hero_id, "name": name, "age": age})
    for heroes in results:  # a join or UNION ALL does not promise to keep each page's order
        heroes.sort(key=itemgetter("id"))
    return results


async def _tagged_rows(session: AsyncSession, pages: Sequence[Page]) -> Iterable[Any]:
    if session.get_bind().dialect.name == "postgresql":
        arrays = {
            "k": list(range(len(pages))),
            "offset": [page.offset for page in pages],
            "limit": [page.limit for page in pages],
        }
        return list(await session.exec(_LATERAL_PAGES, params=arrays))
    rows: list[Any] = []
    for start in range(0, len(pages), MAX_UNION_TERMS):
        chunk = pages[start : start + MAX_UNION_TERMS]
        params: dict[str, int] = {}
        for k, page in enumerate(chunk):
            params[f"o{k}"], params[f"l{k}"] = page.offset, page.limit
        chunk_rows = await session.exec(_union_of_pages(len(chunk)), params=params)
        rows.extend((k + start, *row) for k, *row in chunk_rows)
    return rows
