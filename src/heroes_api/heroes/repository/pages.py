"""Pages of heroes, ordered by id, filtered, by offset or keyset: many pages, few statements.

A page is ``WHERE <its filters> ORDER BY id LIMIT :limit OFFSET :offset``, with ``id > :after_id``
for keyset paging. Filters go into the SQL only when given, so every query can use
``ix_hero_name``, ``ix_hero_age`` or the primary key. Pages of one shape (the same filters
given) share one statement whose rows carry their page's position ``k``; it depends only on the
shape and the batch size, so SQLAlchemy compiles it once and the database plans it cheaply:

- PostgreSQL: ``unnest`` the pages' parameters as arrays and run the page query ``LATERAL`` for
  each: one statement text per shape, whatever the batch size;
- SQLite (no LATERAL, and a ``LIMIT`` cannot name an outer column): a ``UNION ALL`` of the page
  queries, at most 500 terms a statement (SQLite's compound-SELECT limit), cached per size.
"""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from heroes_api.heroes.repository.rows import (
    HERO,
    PUBLIC_COLUMNS,
    PUBLIC_FIELDS,
    HeroRow,
    hero_row,
)
from heroes_api.models import INT32_MAX

MAX_UNION_TERMS = 500  # SQLite's SQLITE_MAX_COMPOUND_SELECT


@dataclass(frozen=True, slots=True)
class Page:
    offset: int = 0
    limit: int = 100
    name: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    after_id: int | None = None

    @property
    def shape(self) -> tuple[str, ...]:
        """The parameters this page gives (offset and limit always): its statement's shape."""
        return tuple(name for name in _TYPES if getattr(self, name) is not None)

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.shape}


_TYPES = {
    "offset": BigInteger,
    "limit": Integer,
    "name": String,
    "min_age": Integer,
    "max_age": Integer,
    "after_id": Integer,
}
# Each filter as a condition on its parameter's SQL value.
_CONDITIONS: dict[str, Callable[[Any], Any]] = {
    "name": lambda value: HERO.c.name == value,
    "min_age": lambda value: HERO.c.age >= value,
    "max_age": lambda value: HERO.c.age <= value,
    "after_id": lambda value: HERO.c.id > value,
}
# An age bound alone gets the other end of the age range too. Planners that cannot see a
# parameter's value (SQLite without STAT4, PostgreSQL's plan for a batch) guess that a one-sided
# range matches a third of the table and walk the primary key instead of ix_hero_age; a
# two-sided range they guess is narrow. So an age filter always costs what it matches.
_AGE_ENDS = {
    "min_age": HERO.c.age <= literal_column(str(INT32_MAX)),
    "max_age": HERO.c.age >= literal_column("0"),
}


def _page_query(shape: tuple[str, ...], param: Callable[[str], Any]) -> Any:
    """The query for one page of ``shape``; ``param(name)`` is the SQL value of a parameter."""
    filters = [_CONDITIONS[name](param(name)) for name in shape if name in _CONDITIONS]
    ages = [name for name in ("min_age", "max_age") if name in shape]
    if len(ages) == 1:
        filters.append(_AGE_ENDS[ages[0]])
    # With an age filter, order by an expression: PostgreSQL's plan for a batch (values unseen)
    # would otherwise walk the primary key in order, filtering every row until LIMIT is met,
    # which for a narrow range is the whole table. This way it reads the range through
    # ix_hero_age and sorts the (few) matches.
    order = HERO.c.id + literal_column("0") if ages else HERO.c.id
    query = select(*PUBLIC_COLUMNS).where(*filters).order_by(order)
    return query.offset(param("offset")).limit(param("limit"))


def _numbered(k: int) -> Callable[[str], Any]:
    """Page ``k``'s parameters in a UNION ALL: ``offset0``, ``limit0``, ``name0``, ``offset1``..."""
    return lambda name: bindparam(f"{name}{k}", type_=_TYPES[name])


@lru_cache(maxsize=64)
def _one_page(shape: tuple[str, ...]) -> Any:
    return _page_query(shape, lambda name: bindparam(name, type_=_TYPES[name]))


@lru_cache(maxsize=64)
def _lateral_pages(shape: tuple[str, ...]) -> Any:
    names = ("k", *shape)
    types = {"k": Integer, **_TYPES}
    pages = (
        func.unnest(*(bindparam(name, type_=ARRAY(types[name])) for name in names))
        .table_valued(*(column(name, types[name]) for name in names))
        .render_derived()
    )
    rows = _page_query(shape, lambda name: pages.c[name]).lateral()
    return select(pages.c.k, *(rows.c[name] for name in PUBLIC_FIELDS)).select_from(
        pages.join(rows, true())
    )


@lru_cache(maxsize=128)
def _union_of_pages(shape: tuple[str, ...], size: int) -> Any:
    parts = []
    for k in range(size):
        page = _page_query(shape, _numbered(k)).subquery()
        parts.append(select(literal(k).label("k"), *(page.c[name] for name in PUBLIC_FIELDS)))
    union = union_all(*parts).subquery()
    return select(union.c.k, *(union.c[name] for name in PUBLIC_FIELDS))


class Statement(NamedTuple):
    """A statement and its parameters. A batch statement's rows are ``(k, *public columns)``,
    ``k`` counting its pages from ``first``; a single page's rows are the public columns.

    ``one_page`` and ``batch_statements`` are the only ways pages become SQL, so the plan tests
    run exactly what is served."""

    query: Any
    params: dict[str, Any]
    first: int = 0


def one_page(page: Page) -> Statement:
    """The statement for a page read alone."""
    return Statement(_one_page(page.shape), page.params())


def batch_statements(dialect: str, pages: Sequence[Page]) -> list[Statement]:
    """The statements that read ``pages``, all of one shape, together on ``dialect``."""
    shape = pages[0].shape
    if dialect == "postgresql":
        arrays = {name: [getattr(page, name) for page in pages] for name in shape}
        arrays["k"] = list(range(len(pages)))
        return [Statement(_lateral_pages(shape), arrays)]
    return [
        _union_statement(shape, pages[start : start + MAX_UNION_TERMS], start)
        for start in range(0, len(pages), MAX_UNION_TERMS)
    ]


def _union_statement(shape: tuple[str, ...], chunk: Sequence[Page], first: int) -> Statement:
    params = {
        f"{name}{k}": value for k, page in enumerate(chunk) for name, value in page.params().items()
    }
    # A statement per size would be up to 500 per shape, each compiled, cached and prepared
    # (RSS grew ~40 MB and every request slowed as they piled up): pad to a power of two
    # with copies of the first page that ask for nothing (LIMIT 0 reads no row).
    size = _padded(len(chunk))
    empty = {**chunk[0].params(), "limit": 0}
    params.update((f"{name}{k}", empty[name]) for k in range(len(chunk), size) for name in shape)
    return Statement(_union_of_pages(shape, size), params, first)


def _padded(size: int) -> int:
    """The statement size a chunk of ``size`` pages runs as: the next power of two, at most
    MAX_UNION_TERMS (sizes 1, 2, 4, ... 256, 500: ten statements a shape)."""
    return min(1 << (size - 1).bit_length(), MAX_UNION_TERMS)


async def list_pages(session: AsyncSession, pages: Sequence[Page]) -> list[list[HeroRow]]:
    """Each page's heroes, ordered by id."""
    if len(pages) == 1:
        query, params, _ = one_page(pages[0])
        return [[hero_row(row) for row in await session.exec(query, params=params)]]
    dialect = session.get_bind().dialect.name
    results: list[list[HeroRow]] = [[] for _ in pages]
    by_shape: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    for k, page in enumerate(pages):
        by_shape[page.shape].append(k)
    for positions in by_shape.values():
        for query, params, first in batch_statements(dialect, [pages[k] for k in positions]):
            for k, *row in await session.exec(query, params=params):
                results[positions[first + k]].append(hero_row(row))
    for heroes in results:  # a join or UNION ALL does not promise to keep each page's order
        heroes.sort(key=itemgetter("id"))
    return results
