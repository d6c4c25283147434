"""Checks that need nothing but the settings and the file system: a bad setting, or a SQLite
file that cannot be used, ends the process with one line saying what to fix (``SystemExit``: no
traceback). Alembic's ``env.py`` and ``adopt`` use these without loading the web stack.
"""

import os
from pathlib import Path

from heroes_api.config import Settings, SettingsError, load_settings

PREFIX = "heroes_api cannot start: "


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise SystemExit(PREFIX + str(error).replace("\n", "\n  ")) from None


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite database file the settings name (None: PostgreSQL, or an in-memory one)."""
    if not settings.is_sqlite:
        return None
    path = settings.database_url.partition(":///")[2].partition("?")[0]
    return Path(path).absolute() if path and path != ":memory:" else None


def file_problem(settings: Settings, *, must_exist: bool) -> str | None:
    """Why the SQLite file cannot be used (without creating it), or None."""
    path = sqlite_path(settings)
    if path is None:
        return None
    directory = path.parent
    if not directory.is_dir():
        return f"the directory of the SQLite database {path} does not exist (HEROES_DATABASE_URL)"
    if not path.exists():
        if must_exist:
            return f"there is no database at {path}: run `alembic upgrade head` (make run does)"
        if not os.access(directory, os.W_OK):
            return f"cannot create the SQLite database {path}: its directory is read-only"
        return None
    if not os.access(path, os.R_OK | os.W_OK):
        return f"cannot write the SQLite database {path}: the file is read-only"
    if not os.access(directory, os.W_OK | os.X_OK):
        # WAL mode keeps heroes.db-wal and heroes.db-shm beside the file.
        return f"cannot write beside the SQLite database {path}: {directory} is read-only"
    return None
