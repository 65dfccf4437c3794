"""The extension's entry in the webui's infotext (generation parameters), and reading it back.

One key, readable in PNG Info and the UI::

    Animate Anyone: mode=animatediff; motion_module=mm_sd_v15_v2.ckpt; frames=16; fps=8.0; formats=GIF+MP4;
    motion_loras=v2_lora_ZoomIn.ckpt@0.8; ...

The separators avoid ',' and ':' so the webui stores the value unquoted. When a value contains one
of the separators (an odd file name), the whole entry is written as JSON instead, which the webui
quotes and unquotes. Reading back, each of the script's controls gets its field from that entry
(``pasted_fields``); values are converted by the type of the field's default.
"""

import json
from dataclasses import fields
from typing import Any, Dict

from .args import AnimateArgs, MotionLoraArg, field_names

KEY = "Animate Anyone"
_ITEM, _PAIR, _LIST, _WEIGHT = "; ", "=", "+", "@"
_RESERVED = (";", "=", "+", "@", ",", ":", "\n", '"')


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "formats":
        return _LIST.join(value)
    if name == "motion_loras":
        return _LIST.join(f"{lora['name']}{_WEIGHT}{lora['strength']:g}" for lora in value)
    return str(value)


def _atoms(name: str, value: Any):
    """The user-chosen strings inside a value (file names, choices) that must avoid the separators."""
    if name == "formats":
        return list(value)
    if name == "motion_loras":
        return [lora["name"] for lora in value]
    return [str(value)]


def encode(args: AnimateArgs, extra: Dict[str, Any] = None) -> str:
    data = args.as_infotext_dict()
    data.update(extra or {})
    if any(mark in atom for name, value in data.items() for atom in _atoms(name, value) for mark in _RESERVED):
        return json.dumps(data, separators=(",", ":"))
    return _ITEM.join(f"{name}{_PAIR}{_text(name, value)}" for name, value in data.items())


def _value(name: str, text: str, default: Any) -> Any:
    if name == "formats":
        return [f for f in text.split(_LIST) if f]
    if name == "motion_loras":
        loras = []
        for item in filter(None, text.split(_LIST)):
            lora, _, strength = item.rpartition(_WEIGHT)
            loras.append({"name": lora, "strength": float(strength)})
        return loras
    if isinstance(default, bool):
        return text.strip().lower() == "true"
    if default is None and text.strip().lower() in ("true", "false"):  # an optional bool (prompt_travel_loop)
        return text.strip().lower() == "true"
    if isinstance(default, int):
        return int(float(text))
    if isinstance(default, float):
        return float(text)
    return text


def decode(raw: Any) -> Dict[str, Any]:
    """The stored fields ({} when the entry cannot be read)."""
    if isinstance(raw, dict):
        return dict(raw)
    if not isinstance(raw, str) or not raw.strip():
        return {}
    if raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    defaults = {f.name: getattr(AnimateArgs(), f.name) for f in fields(AnimateArgs)}
    out = {}
    for item in raw.split(_ITEM.strip()):
        name, sep, text = item.strip().partition(_PAIR)
        if not sep or name not in defaults:
            continue  # extra facts (motion_module_version, reference size ...) are not fields
        try:
            out[name] = _value(name, text, defaults[name])
        except ValueError:
            continue
    return out


def pasted_fields(params: Dict[str, Any]) -> Dict[str, Any]:
    """The fields stored in a parsed infotext (``{}`` when it has no entry of ours).

    Used by the controls' paste getters: they run both when a person pastes an infotext into the
    UI and when an API request carries an ``infotext`` field (which runs no paste callbacks).
    """
    if KEY not in params:
        return {}
    data = decode(params[KEY])
    if not data:
        return {}
    fields_ = {name: data[name] for name in field_names() if name in data}
    if "context_schedule" not in fields_ and "closed_loop" in fields_:
        # written before the schedules had names: closed loops shifted, open windows did not
        fields_["context_schedule"] = "loop" if fields_["closed_loop"] else "open"
    fields_["enable"] = True
    return fields_


__all__ = ["KEY", "MotionLoraArg", "decode", "encode", "pasted_fields"]
