"""Safe loading of weight files: safetensors, or pickles through PyTorch's weights-only unpickler.

Never falls back to full unpickling. Inside the webui ``torch.load`` is replaced by the webui's
own checker (which returns ``None`` on failure and rejects zip files written by current torch),
so this module calls ``torch.serialization.load`` -- the unpatched original -- directly.
"""

import os
import pickle
import zipfile
from typing import Dict, List, Optional

import torch

from .errors import WeightsFileError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

_CONVERT_HINT = (
    "Convert it to .safetensors with a tool you trust, e.g. in a Python you trust: "
    "`import torch, safetensors.torch as st; "
    "st.save_file({k: v.contiguous() for k, v in torch.load(SRC, weights_only=False).items()}, DST)`."
)


def missing_file_error(path: str, what: str) -> WeightsFileError:
    folder = os.path.dirname(os.path.abspath(path))
    return WeightsFileError(
        f"{what} file not found: '{os.path.basename(path)}' was expected in the folder '{folder}'."
    )


def load_state_dict(path: str, what: str = "weights") -> Dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from ``path`` on the CPU, in the file's dtypes.

    ``what`` names the kind of file in error messages ("motion module", "pose guider", ...).
    A ``{"state_dict": {...}}`` wrapper is unwrapped and non-tensor entries are dropped.
    """
    if not os.path.isfile(path):
        raise missing_file_error(path, what)
    name = os.path.basename(path)
    if name.lower().endswith(SAFETENSORS_SUFFIXES):
        data = _load_safetensors(path, what)
    else:
        data = _load_pickle(path, what)
    return _flatten(data, path, what)


def read_keys(path: str) -> Optional[List[str]]:
    """The tensor names in ``path`` without reading the tensors, or None when that is not cheap or
    not possible (a legacy, non-zip pickle; an unreadable file). For listings: never raises.

    safetensors: the header only. Zip pickles: the weights-only unpickler with the storages
    memory-mapped, so the tensor bytes are not read.
    """
    try:
        if path.lower().endswith(SAFETENSORS_SUFFIXES):
            from safetensors import safe_open

            with safe_open(path, framework="pt", device="cpu") as f:
                return list(f.keys())
        if not zipfile.is_zipfile(path):
            return None
        data = torch.serialization.load(path, map_location="cpu", weights_only=True, mmap=True)
        return list(_flatten(data, path, "weights"))
    except Exception:  # a listing shows the file anyway; loading it gives the real error
        return None


def _load_safetensors(path: str, what: str):
    import safetensors.torch

    try:
        return safetensors.torch.load_file(path, device="cpu")
    except Exception as e:  # SafetensorError is not importable on every version
        raise WeightsFileError(
            f"'{path}' is not a readable safetensors {what} file (truncated or corrupted?): {e}"
        ) from e


def _load_pickle(path: str, what: str):
    try:
        return _weights_only_load(path)
    except pickle.UnpicklingError as e:
        message = str(e)
        offending = _unsafe_globals(path)
        if offending or "GLOBAL" in message or "Unsupported global" in message or "Unsupported class" in message:
            if offending:
                detail = f" It references: {', '.join(offending)}."
            else:  # torch < 2.5 cannot list them; its own message names the first one
                detail = f" ({_unpickler_reason(message)})" if _unpickler_reason(message) else ""
            raise WeightsFileError(
                f"Refusing to load '{path}': this {what} file is a pickle that needs code outside "
                f"plain tensors to be executed, and only weights-only loading is allowed.{detail} "
                f"{_CONVERT_HINT}"
            ) from e
        raise _corrupted(path, what, e) from e
    except Exception as e:  # zip, struct, EOF, index errors: the bytes are not a checkpoint
        raise _corrupted(path, what, e) from e


def _unpickler_reason(text: str) -> str:
    """The reason torch's weights-only unpickler gives, without its boilerplate ('' if none)."""
    marker = "WeightsUnpickler error:"
    return text.split(marker, 1)[1].strip().splitlines()[0] if marker in text else ""


def _corrupted(path: str, what: str, error: Exception) -> WeightsFileError:
    text = str(error)
    reason = _unpickler_reason(text)
    if not reason:
        reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return WeightsFileError(
        f"'{path}' is not a readable PyTorch {what} file (truncated or corrupted?): {reason}"
    )


def _weights_only_load(path: str):
    load = torch.serialization.load
    if zipfile.is_zipfile(path):
        try:
            return load(path, map_location="cpu", weights_only=True, mmap=True)
        except TypeError:  # torch without the mmap argument
            pass
    return load(path, map_location="cpu", weights_only=True)


def _unsafe_globals(path: str):
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None or not zipfile.is_zipfile(path):
        return []
    try:
        return list(finder(path))
    except Exception:
        return []


def _flatten(data, path: str, what: str) -> Dict[str, torch.Tensor]:
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise WeightsFileError(
            f"'{path}' does not hold a dictionary of tensors (found {type(data).__name__}); "
            f"it is not a {what} file."
        )
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsFileError(f"'{path}' contains no tensors; it is not a {what} file.")
    return tensors
