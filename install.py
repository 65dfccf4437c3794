"""Installs what the webui lacks for video files: PyAV (H.264 MP4 / VP9 WebM, FFmpeg inside the
wheel) and imageio (whose PyAV plugin uses it). The webui runs this file with its own Python at
every start (``python install.py``, unless started with --skip-install).

Everything is pinned and installed with ``--no-deps``: an unpinned install of common packages
upgrades numpy, huggingface_hub or protobuf and breaks the webui. Neither package needs anything
the webui does not already have (numpy, Pillow). Packages already present at a usable version
are left alone.
"""

import importlib.metadata
import subprocess
import sys

# (distribution, pinned requirement, minimum version that is good enough if already installed)
REQUIREMENTS = (
    ("av", "av==17.1.0", (14, 0)),  # 17.1.0: wheels for Python 3.10 - 3.12 with libx264 / libvpx inside
    ("imageio", "imageio==2.37.0", (2, 31)),
)


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _as_tuple(version):
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def missing():
    """Requirements that are absent or older than their minimum."""
    return [pinned for name, pinned, minimum in REQUIREMENTS
            if _version(name) is None or _as_tuple(_version(name)) < minimum]


def _pip_install(requirement):
    try:
        import launch  # the webui's helper: honours --skip-install and a custom index URL

        launch.run_pip(f'install --no-deps "{requirement}"', f"{requirement} for Animate Anyone")
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", requirement])


def main():
    for requirement in missing():
        try:
            _pip_install(requirement)
        except Exception as e:  # the webui keeps starting; video formats then report what is missing
            print(f"Animate Anyone: could not install {requirement}: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
