"""Where motion modules and motion LoRAs live on disk, and the loaded-weights cache.

Motion modules: the folder set in Settings (default: the extension's ``motion_modules/``), plus
the webui's ``models/AnimateDiff`` when it exists. Motion LoRAs: the ``lora/`` subfolder of
each. Files are listed by name (``.safetensors`` first), never downloaded.

The cache keeps the most recently used video model on its device between jobs (loading a
1.8 GB file per job would dominate short jobs). It holds no job state: a job borrows the model,
and motion-LoRA merges are undone in place before the job returns (even on exceptions).
"""

import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from ...motion import MotionModel, load, load_motion_lora
from ...motion.formats import is_sdxl_module
from ...motion.lora import MotionLoRA
from ...safe_load import SAFETENSORS_SUFFIXES, WEIGHT_SUFFIXES, read_keys
from ..errors import RequestError
from .model_kind import SD1, SDXL

LORA_SUBFOLDER = "lora"


def _listing(folder: str, recursive: bool, skip: Tuple[str, ...] = ()) -> List[str]:
    """Relative paths of weight files under ``folder`` (safetensors first, then by name)."""
    found = []
    if not os.path.isdir(folder):
        return found
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip)
        for name in files:
            if name.lower().endswith(WEIGHT_SUFFIXES) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
        if not recursive:
            break
    return sorted(found, key=lambda rel: (not rel.lower().endswith(SAFETENSORS_SUFFIXES), rel.lower()))


class ModuleFamilies:
    """Which checkpoint family (``model_kind.SD1`` / ``SDXL``) each motion-module file is for, read from
    its tensor names only and remembered per file identity (path, size, mtime) for the process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._known: Dict[Tuple, Optional[str]] = {}

    def of(self, path: str) -> Optional[str]:
        """The family, or None when the names do not tell (e.g. a legacy pickle)."""
        try:
            key = _file_key(path)
        except OSError:
            return None
        with self._lock:
            if key in self._known:
                return self._known[key]
        keys = read_keys(path)
        sdxl = is_sdxl_module(keys) if keys is not None else None
        family = None if sdxl is None else (SDXL if sdxl else SD1)
        with self._lock:
            self._known[key] = family
        return family


class MotionLibrary:
    """The motion-module folders of one webui installation."""

    def __init__(self, folders: List[str], families: Optional[ModuleFamilies] = None):
        self.folders = [os.path.abspath(f) for f in folders if f]
        self.families = families or ModuleFamilies()

    def modules(self, family: Optional[str] = None) -> List[str]:
        """Every motion module's name; with ``family`` (the loaded checkpoint's) only those made for
        it, plus those whose family the file names cannot tell."""
        names: List[str] = []
        for folder in self.folders:
            for rel in _listing(folder, recursive=True, skip=(LORA_SUBFOLDER,)):
                if rel not in names and (family is None or self.family_of(rel) in (family, None)):
                    names.append(rel)
        return names

    def family_of(self, name: str) -> Optional[str]:
        for folder in self.folders:
            path = os.path.join(folder, *name.split("/"))
            if os.path.isfile(path):
                return self.families.of(path)
        return None

    def loras(self) -> List[str]:
        names: List[str] = []
        for folder in self.folders:
            for rel in _listing(os.path.join(folder, LORA_SUBFOLDER), recursive=True):
                if rel not in names:
                    names.append(rel)
        return names

    def _resolve(self, name: str, subfolder: str, kind: str, available: List[str]) -> str:
        """Only a name from the folders' own listing is opened: a path, '..', a drive-relative name
        ('C:x.ckpt' on Windows) or anything else that is not listed never reaches the file system."""
        wanted = name.replace("\\", "/")
        if os.path.isabs(name) or ".." in wanted.split("/") or ":" in wanted:
            raise RequestError(f"{kind} '{name}': give a file name from the {kind} folder, not a path")
        if wanted in available:
            for folder in self.folders:
                path = os.path.join(folder, subfolder, *wanted.split("/"))
                if os.path.isfile(path):
                    return path
        where = " or ".join(f"'{os.path.join(f, subfolder)}'" for f in self.folders)
        shown = ", ".join(available[:10]) if available else "none"
        raise RequestError(f"{kind} '{name}' was not found in {where}. Available: {shown}.")

    def module_path(self, name: str, family: Optional[str] = None) -> Tuple[str, str]:
        """(name, path) of the motion module ``name``, or for "" of the first one found that fits
        ``family`` (the loaded checkpoint's)."""
        available = self.modules()
        if not name:
            fitting = self.modules(family) if family else available
            if not fitting:
                where = " or ".join(f"'{f}'" for f in self.folders)
                examples = ("mm_sdxl_v10_beta.ckpt or hsxl_temporal_layers.safetensors" if family == SDXL
                            else "mm_sd_v15_v2.ckpt or v3_sd15_mm.ckpt")
                kind = f" for {family} checkpoints" if family and available else ""
                raise RequestError(f"no motion module{kind} found; put a motion module file (e.g. {examples}) into {where}")
            name = fitting[0]
        return name, self._resolve(name, "", "motion module", available)

    def lora_path(self, name: str) -> str:
        return self._resolve(name, LORA_SUBFOLDER, "motion LoRA", self.loras())


def _file_key(path: str) -> Tuple[str, int, int]:
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


@dataclass
class AnimateAnyoneWeights:
    """The Animate Anyone release on one device and dtype, with its motion module."""

    models: object  # lib_animate.reference.weights.AnimateAnyoneModels
    motion_model: MotionModel


def _folder_key(folder: str) -> Tuple:
    from ...reference.weights import locate_weights

    files = locate_weights(folder)
    encoder = files.image_encoder
    parts = [files.denoising_unet, files.reference_unet, files.pose_guider, files.motion_module]
    parts += sorted(os.path.join(encoder, name) for name in os.listdir(encoder))
    return tuple(_file_key(path) for path in parts if os.path.isfile(path))


class WeightsCache:
    """The last video model (an AnimateDiff motion module or the Animate Anyone release, on its
    device and dtype) and the motion LoRAs used, keyed by file identity. One video model at a
    time: switching modes frees the other's memory first.

    Jobs run one at a time under the webui's queue lock, but other code (the tab's handlers, the
    Settings page) runs outside it. Every change of the cache therefore takes the cache's own lock,
    and a job that uses the cached weights holds them (``hold`` ... ``let_go``): while any job holds
    them, nothing offloads them. (The tab's folder box, pose preview and weights status only read
    files and settings; a job reads its settings once, so a folder changed mid-job applies to the
    next job.)
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._holders = 0
        self._module: Optional[Tuple[Tuple, object]] = None
        self._loras: Dict[Tuple, MotionLoRA] = {}

    def hold(self) -> None:
        with self._lock:
            self._holders += 1

    def let_go(self) -> None:
        with self._lock:
            self._holders = max(0, self._holders - 1)

    @property
    def held(self) -> bool:
        return self._holders > 0

    def _get(self, key: Tuple, make):
        with self._lock:
            if self._module is not None and self._module[0] == key:
                return self._module[1]
            self._module = None  # drop the old one before loading the next (memory)
            value = make()
            self._module = (key, value)
            return value

    def motion_module(self, path: str, device: torch.device, dtype: torch.dtype) -> MotionModel:
        key = ("motion", _file_key(path), str(device), dtype)
        return self._get(key, lambda: load(path).to(device=device, dtype=dtype))

    def animate_anyone(self, folder: str, device: torch.device, dtype: torch.dtype) -> AnimateAnyoneWeights:
        """The release in ``folder`` (converted UNets cached in ``folder/converted``)."""
        from ...reference.weights import load_weights

        def make():
            models = load_weights(folder, dtype=dtype, cache_dir=os.path.join(folder, "converted"))
            for unet in (models.denoising_unet, models.reference_unet):
                unet.to(device)
                unet.dtype = dtype  # ldm's UNetModel casts its input to this
            models.pose_guider.to(device)
            models.image_encoder.to(device)
            motion_model = load(models.motion_module).to(device=device, dtype=dtype)
            return AnimateAnyoneWeights(models, motion_model)

        return self._get(("animate_anyone", _folder_key(folder), str(device), dtype), make)

    def motion_lora(self, path: str) -> MotionLoRA:
        key = _file_key(path)
        with self._lock:
            if key not in self._loras:
                self._loras = {key: load_motion_lora(path), **{k: v for k, v in self._loras.items() if k != key}}
                while len(self._loras) > 8:
                    self._loras.pop(next(reversed(self._loras)))
            return self._loras[key]

    def offload(self) -> bool:
        """Forget the cached video model (low-VRAM mode, or on request) so its memory is freed --
        unless a job holds it. Returns whether it was offloaded."""
        with self._lock:
            if self._holders:
                return False
            self._module = None
            return True

    @property
    def cached(self) -> bool:
        return self._module is not None
