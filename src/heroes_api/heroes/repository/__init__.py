"""All of the hero SQL: plain async functions, session first, each written for a whole batch.

- ``rows``: the table's public columns and the plain rows every statement returns;
- ``by_id``: heroes by id: the point reads (``get_heroes``) and the batched
  INSERT/UPDATE/DELETE (``apply_writes``);
- ``pages``: pages of heroes, many per statement (``list_pages``).
"""

from heroes_api.heroes.repository.by_id import (
    Create,
    Delete,
    Update,
    Write,
    WriteResult,
    apply_writes,
    get_heroes,
)
from heroes_api.heroes.repository.pages import Page, list_pages
from heroes_api.heroes.repository.rows import HeroRow, VersionedRow

__all__ = [
    "Create",
    "Delete",
    "HeroRow",
    "Page",
    "Update",
    "VersionedRow",
    "Write",
    "WriteResult",
    "apply_writes",
    "get_heroes",
    "list_pages",
]
