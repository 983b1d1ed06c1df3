"""Private files: what Lorong creates under ``var/`` is readable by its own user only.

The database holds API token hashes and device credentials, the spool and dead letters hold every
reading not yet stored: directories Lorong creates are 0700, files 0600 (SQLite gives a
database's ``-wal`` and ``-shm`` files the mode of the database file).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (directories that exist are left as they are)."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(p, 0o700)  # mkdir's mode is masked by the umask


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist yet (an existing file is left alone)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def missing_folder(out: Path) -> str | None:
    """Why an output file ``out`` cannot be written because of its folder, as one line (``folder
    X does not exist: ...``, ``X is not a folder``), or None when its folder exists. Commands that
    write a file the user names check this first: a missing folder is not created (it is more often
    a typo than a wish), and nothing slow runs before the answer."""
    folder = out.parent
    if not folder.exists():
        return f"folder {folder} does not exist: create it first, or write elsewhere"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    return None
