"""The SQLite store: private file, WAL, forward migrations, transactions, two processes."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlite_utils

from keeper.core.errors import StoreError
from keeper.store.db import open_store
from keeper.store.schema import MIGRATIONS, Migration


def test_new_store_is_private_wal_and_at_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keeper.sqlite3"
    with open_store(path) as store:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
        assert store.schema_version() == max(m.version for m in MIGRATIONS)


def test_existing_world_readable_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    open_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopen_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    with open_store(path) as store:
        store.set_meta("router", "0x1")
        applied = store.query("SELECT * FROM schema_version")
    with open_store(path) as store:
        assert store.get_meta("router") == "0x1"
        assert store.query("SELECT * FROM schema_version") == applied


def test_older_schema_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    v1 = MIGRATIONS[:1]
    with open_store(path, v1) as store:
        store.set_meta("kept", "yes")
    calls: list[int] = []

    def v2(db: sqlite_utils.Database) -> None:
        calls.append(2)
        db.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY, note TEXT)")

    with open_store(path, [*v1, Migration(2, "extra", v2)]) as store:
        assert store.schema_version() == 2
        assert store.get_meta("kept") == "yes"
        assert "extra" in store.db.table_names()
    with open_store(path, [*v1, Migration(2, "extra", v2)]):
        pass
    assert calls == [2]


def test_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    open_store(path, MIGRATIONS[:1]).close()

    def broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (id INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        open_store(path, [*MIGRATIONS[:1], Migration(2, "broken", broken)])
    with open_store(path, MIGRATIONS[:1]) as store:
        assert store.schema_version() == 1
        assert "half" not in store.db.table_names()


def test_file_from_a_newer_keeper_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    open_store(path, [*MIGRATIONS, Migration(999, "future", lambda db: None)]).close()
    with pytest.raises(StoreError, match="newer keeper"):
        open_store(path)


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite store"):
        open_store(path)


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the store"):
        open_store(blocker / "sub" / "k.sqlite3")


def test_transaction_rolls_back_everything_on_error(tmp_path: Path) -> None:
    with open_store(tmp_path / "k.sqlite3") as store:
        with pytest.raises(ValueError, match="stop"), store.transaction() as db:
            db["meta"].insert({"key": "a", "value": "1"})
            with store.transaction():
                db["meta"].insert({"key": "b", "value": "2"})
            raise ValueError("stop")
        assert store.query("SELECT * FROM meta") == []


def test_nested_failure_rolls_back_only_the_savepoint(tmp_path: Path) -> None:
    with open_store(tmp_path / "k.sqlite3") as store:
        with store.transaction() as db:
            db["meta"].insert({"key": "a", "value": "1"})
            with pytest.raises(ValueError, match="inner"), store.transaction():
                db["meta"].insert({"key": "b", "value": "2"})
                raise ValueError("inner")
        assert [r["key"] for r in store.query("SELECT key FROM meta")] == ["a"]


def test_second_process_sees_committed_data_and_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from keeper.store.db import open_store
        with open_store(Path({str(path)!r})) as store:
            store.set_meta("writer", "child")
            print(store.get_meta("parent"), store.schema_version())
        """
    )
    with open_store(path) as store:
        store.set_meta("parent", "here")
        # The parent keeps its connection open (as the daemon does) while a CLI process writes.
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
        )
        assert result.stdout.split() == ["here", str(store.schema_version())]
        assert store.get_meta("writer") == "child"
        versions = store.query("SELECT version FROM schema_version")
        assert len(versions) == len(MIGRATIONS)


def test_reader_is_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    with open_store(path) as writer:
        writer.set_meta("a", "committed")
        with writer.transaction() as db:
            db["meta"].insert({"key": "b", "value": "uncommitted"})
            reader = sqlite3.connect(path, timeout=0.1)
            rows = reader.execute("SELECT key FROM meta ORDER BY key").fetchall()
            reader.close()
        assert rows == [("a",)]


def test_migration_versions_are_contiguous_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
