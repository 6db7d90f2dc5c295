"""Seeing, from outside, that a process or thread is blocked waiting for a file lock."""

from __future__ import annotations

import os
from pathlib import Path


def flock_waiting(path: Path) -> bool:
    """Whether someone is blocked in ``flock(2)`` on ``path`` now: the kernel lists each waiter
    in /proc/locks as a ``->`` entry naming the file's device and inode."""
    st = os.stat(path)
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] != ["->", "FLOCK"] or len(fields) < 7:
            continue
        major, minor, inode = fields[6].split(":")
        if (int(major, 16), int(minor, 16), int(inode)) == wanted:
            return True
    return False
