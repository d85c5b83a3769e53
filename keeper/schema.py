"""Every table of the store, as one ordered list of forward migrations.

All migrations live here (not spread over the modules that use the tables) so that any
command that opens the store, however few modules it imports, knows the whole schema.
Append-only: a released migration is never edited; a change is a new migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def _sql(*statements: str) -> Callable[[sqlite_utils.Database], None]:
    def apply(db: sqlite_utils.Database) -> None:
        for statement in statements:
            db.execute(statement)

    return apply


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "base",
        # meta: state that belongs to no other table, e.g. the deployment this store
        # was first used with, so a store is never silently reused for another router.
        _sql("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
    ),
]
