"""The keeper's one SQLite file: open, migrate, transact.

- The file is created with mode 0600 (it holds job state and costs; nothing secret, but
  nothing for other users either) and runs in WAL mode so readers (``status``,
  ``costs``) never block the daemon.
- ``schema_version`` records every applied migration. Migrations only go forward; each
  runs in its own ``BEGIN IMMEDIATE`` transaction and re-reads the version inside it, so
  two processes opening an old file at once migrate it exactly once.
- ``Store.transaction()`` is the unit of atomicity: one job transition, or one batch of
  events plus the stream cursor. Nested blocks become savepoints (sqlite-utils' own
  writes nest the same way).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from keeper.core.errors import EX_CONFIG, KeeperError, StoreError
from keeper.store.schema import MIGRATIONS, Migration

_BUSY_TIMEOUT_MS = 10_000


class StoreSchemaTooNew(StoreError):
    """A downgrade: restarting cannot help, so systemd must not retry (exit 78)."""

    code = "store_schema_too_new"
    exit_code = EX_CONFIG


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """An open store. Not thread-safe: one per thread or task that writes."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self.db = sqlite_utils.Database(conn)

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """Run the block atomically; nested calls are savepoints of the outer one."""
        if self._conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"cannot start a write transaction on {self.path}: {exc} "
                "(another process holds the write lock too long, or the disk is read-only)"
            ) from exc
        try:
            yield self.db
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"cannot commit to {self.path}: {exc}") from exc

    # -- reads --------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def schema_version(self) -> int:
        return _current_version(self._conn)

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _create_private_file(path: Path) -> None:
    """Create the file 0600 before SQLite does (SQLite would honour the umask, often 0644)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        # Existing files keep their owner's choice only if it is at least as strict.
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store at {path}: {exc.strerror} "
            "(set store.path to a writable location, e.g. systemd's StateDirectory)"
        ) from exc


def open_store(path: Path, migrations: Sequence[Migration] | None = None) -> Store:
    """Open (creating if needed) and migrate the store at ``path``."""
    migrations = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
    _create_private_file(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # FULL: a committed job transition survives power loss, not just a crash.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable SQLite store: {exc} "
            "(point store.path at the keeper's database, or restore it from a backup)"
        ) from exc
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); use a local filesystem")
    store = Store(path, conn)
    _migrate(store, conn, migrations)
    return store


def _migrate(store: Store, conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    known = max((m.version for m in migrations), default=0)
    with store.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    current = _current_version(conn)
    if current > known:
        store.close()
        raise StoreSchemaTooNew(
            f"{store.path} has schema version {current} but this keeper knows only up to "
            f"{known}: it was written by a newer keeper. Upgrade the keeper, or restore a "
            "backup made before the upgrade."
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        with store.transaction():
            # Another process may have migrated while we waited for the write lock.
            if _current_version(conn) >= migration.version:
                continue
            migration.apply(store.db)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _utcnow()),
            )


class NoStoreError(KeeperError):
    """A read-only command found no store: the keeper never ran with this config."""

    code = "no_store"


def open_existing_store(path: Path) -> Store:
    """Open the store at ``path`` without ever creating one (reports read, never create)."""
    if not path.is_file():
        raise NoStoreError(
            f"no store at {path} yet (the keeper has not run; check store.path in the config)"
        )
    return open_store(path)
