"""Temporary files that only the page needs (previews, unsaved videos), pruned as new ones come.

Each call makes a new folder under the webui's temp folder setting (or the system's) and removes
folders of the same kind older than ``MAX_AGE_S`` (the page has long copied them by then), so a day
of generating does not fill the disk.
"""

import os
import shutil
import tempfile
import time

MAX_AGE_S = 2 * 3600


def scratch_folder(kind: str) -> str:
    try:
        from modules import shared

        base = shared.opts.temp_dir or tempfile.gettempdir()
    except ImportError:  # outside the webui (tests)
        base = tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    prefix = f"animate-anyone-{kind}-"
    _prune(base, prefix)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def _prune(base: str, prefix: str) -> None:
    cutoff = time.time() - MAX_AGE_S
    for name in os.listdir(base):
        path = os.path.join(base, name)
        try:
            if name.startswith(prefix) and os.path.isdir(path) and os.path.getmtime(path) < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # removed by another job meanwhile
            continue
