import os
import time

from lib_animate.webui import scratch


def test_scratch_folders_are_new_and_old_ones_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch.tempfile, "gettempdir", lambda: str(tmp_path))
    old = scratch.scratch_folder("preview")
    other_kind = scratch.scratch_folder("tab")
    past = time.time() - scratch.MAX_AGE_S - 60
    os.utime(old, (past, past))
    os.utime(other_kind, (past, past))
    recent = scratch.scratch_folder("preview")
    newest = scratch.scratch_folder("preview")
    assert recent != newest and os.path.isdir(recent) and os.path.isdir(newest)
    assert not os.path.exists(old)  # an old folder of the same kind is gone
    assert os.path.isdir(other_kind)  # other kinds are pruned by their own calls
