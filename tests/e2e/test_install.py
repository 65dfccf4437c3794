"""install.py, run the way the webui runs it (its own Python, the webui root on PYTHONPATH), adds
its pinned packages and changes no other package of the webui's environment."""

import os
import subprocess

import pytest

from tests.support.webui_env import REPO_ROOT

pytestmark = pytest.mark.e2e

OURS = ("av", "imageio")


def freeze(python):
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return dict((name.lower().replace("_", "-"), version) for name, version in (line.split("==", 1) for line in out.splitlines() if "==" in line))


def pip(python, *args):
    subprocess.run([str(python), "-m", "pip", *args, "--disable-pip-version-check", "-q"], check=True)


def test_install_py_changes_nothing_but_its_own_packages(webui_checkout):
    python = webui_checkout.python
    original = freeze(python)
    try:
        pip(python, "uninstall", "-y", *[name for name in OURS if name in original])
        before = freeze(python)
        assert not any(name in before for name in OURS)
        env = dict(os.environ, PYTHONPATH=str(webui_checkout.root))
        subprocess.run([str(python), str(REPO_ROOT / "install.py")], cwd=str(webui_checkout.root), env=env, check=True, timeout=600)
        after = freeze(python)
        assert after["av"] == "17.1.0" and after["imageio"] == "2.37.0"
        assert {k: v for k, v in after.items() if k not in OURS} == before
        # A second run has nothing to do.
        subprocess.run([str(python), str(REPO_ROOT / "install.py")], cwd=str(webui_checkout.root), env=env, check=True, timeout=600)
        assert freeze(python) == after
    finally:
        now = freeze(python)
        for name in OURS:
            if name in original and now.get(name) != original[name]:
                pip(python, "install", "--no-deps", f"{name}=={original[name]}")
