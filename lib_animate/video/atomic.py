"""Atomic writes: a file (or folder) appears under its final name complete, or not at all.

Writers fill a hidden temporary sibling (same folder, so the rename cannot cross file systems),
which is flushed to disk and then renamed over the final name. Its name ends in ``.tmp`` so
that nothing scanning for ``*.mp4``/``*.png`` picks up a half-written file; it is removed if
the writer fails.
"""

import contextlib
import os
import secrets
import shutil
from typing import Callable, Iterator


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDWR)  # Windows cannot flush a read-only handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_file(path: str) -> None:
    # Not tempfile.mkstemp: its 0600 mode would carry over to the final file; this gets the
    # usual mode (0666 less the umask), like any file the webui writes.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _create_sibling(path: str, create: Callable[[str], None]) -> str:
    """Create a new hidden ``.<name>.<random>.tmp`` next to ``path`` and return its path."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    while True:
        candidate = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename."""
    path = os.path.abspath(path)
    tmp = _create_sibling(path, _create_file)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """Yield a temporary folder to fill; on success its files appear in ``path``.

    A new ``path`` appears in one rename with all its files. If ``path`` already exists, each
    file replaces its namesake in one rename (other files in it are left alone).
    """
    path = os.path.abspath(path)
    tmp = _create_sibling(path, os.mkdir)
    try:
        yield tmp
        for entry in os.listdir(tmp):
            _fsync_file(os.path.join(tmp, entry))
        if not os.path.exists(path):
            os.rename(tmp, path)
            return
        for entry in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, entry), os.path.join(path, entry))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
