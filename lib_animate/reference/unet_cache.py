"""A safetensors cache of converted (ldm-named) UNet weights, so the next load skips the pickle.

One file per source, in a folder the caller chooses (the weights folder itself, or a cache
folder). The header records the source's size and modification time and the UNet layout; a
cache whose record does not match the source, or that cannot be read, is ignored (and then
rewritten by the caller). Writing goes through a temporary file and an atomic rename; a cache
that cannot be written (read-only folder, full disk) only costs speed and gives a warning.
"""

import dataclasses
import hashlib
import json
import os
import warnings
from typing import Dict, Optional, Tuple

import torch

from .convert import UNetLayout

CACHE_FORMAT = "lib_animate.reference.ldm_unet/1"


def cache_path(source: str, cache_dir: str) -> str:
    """Where ``source``'s converted weights are cached (the name includes a hash of its path)."""
    absolute = os.path.abspath(source)
    stem = os.path.splitext(os.path.basename(absolute))[0]
    digest = hashlib.sha1(absolute.encode("utf-8")).hexdigest()[:10]
    return os.path.join(cache_dir, f"{stem}.{digest}.ldm.safetensors")


def _stamp(source: str) -> Dict[str, str]:
    info = os.stat(source)
    return {
        "format": CACHE_FORMAT,
        "source": os.path.abspath(source),
        "source_size": str(info.st_size),
        "source_mtime_ns": str(info.st_mtime_ns),
    }


def read_cache(source: str, cache_dir: Optional[str]) -> Optional[Tuple[UNetLayout, Dict[str, torch.Tensor]]]:
    """The cached (layout, ldm weights) of ``source`` if a current, readable cache exists."""
    if not cache_dir:
        return None
    path = cache_path(source, cache_dir)
    if not os.path.isfile(path):
        return None
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        if any(metadata.get(k) != v for k, v in _stamp(source).items()):
            return None  # stale: the source changed since the cache was written
        layout_fields = json.loads(metadata["layout"])
        layout_fields["channel_mult"] = tuple(layout_fields["channel_mult"])
        layout_fields["attention_levels"] = tuple(layout_fields["attention_levels"])
        layout = UNetLayout(**layout_fields)
        return layout, load_file(path, device="cpu")
    except Exception:
        return None  # truncated or otherwise unreadable: rebuilt from the source


def write_cache(source: str, cache_dir: Optional[str], layout: UNetLayout, weights: Dict[str, torch.Tensor]) -> Optional[str]:
    """Write the cache for ``source``; returns its path, or None when it could not be written."""
    if not cache_dir:
        return None
    from safetensors.torch import save_file

    path = cache_path(source, cache_dir)
    temporary = f"{path}.tmp-{os.getpid()}"
    metadata = dict(_stamp(source), layout=json.dumps(dataclasses.asdict(layout)))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        save_file({k: v.contiguous() for k, v in weights.items()}, temporary, metadata=metadata)
        os.replace(temporary, path)
        return path
    except OSError as e:
        warnings.warn(f"could not write the converted-weights cache '{path}' ({e}); loading stays slower")
        try:
            os.remove(temporary)
        except OSError:
            pass
        return None
