"""The state directory is private: 0700, every file in it 0600.

It holds the audit chain, dead letters (webhook bodies), Temporal's database, logs and the
local tokens. Long-running commands set the umask to 077 before creating anything, so
files made later (SQLite's -wal/-shm, rotated logs, the Temporal dev server's database)
are private too; :func:`make_private` also tightens what an older version left open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_private(state_dir: Path, *, set_umask: bool = False) -> None:
    """Create ``state_dir`` 0700 if missing; make it 0700 and everything in it 0600/0700."""
    if set_umask:
        os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    uid = os.getuid()
    for root, dirs, files in os.walk(state_dir):
        _chmod(Path(root), 0o700, uid)
        for name in files:
            _chmod(Path(root) / name, 0o600, uid)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]


def _chmod(path: Path, mode: int, uid: int) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or stat.S_IMODE(st.st_mode) == mode:
        return
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return
    try:
        path.chmod(mode)
    except OSError:
        pass  # not ours to change (another user's file in a shared dir)
