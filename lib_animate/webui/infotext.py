"""The extension's entry in the webui's infotext (generation parameters), and reading it back.

Written as one key, ``Animate Anyone: {json}`` (the webui quotes values that contain commas or
colons and unquotes them when parsing). Pasting an infotext splits that JSON into one key per
field, ``Animate Anyone <field>``, which the script's ``infotext_fields`` map to its controls.
"""

import json
from typing import Any, Dict

from .args import AnimateArgs, field_names

KEY = "Animate Anyone"


def encode(args: AnimateArgs, extra: Dict[str, Any] = None) -> str:
    data = args.as_infotext_dict()
    data.update(extra or {})
    return json.dumps(data, separators=(", ", ": "))


def field_key(name: str) -> str:
    return f"{KEY} {name}"


def expand_pasted(params: Dict[str, Any]) -> None:
    """``on_infotext_pasted`` callback body: add per-field keys for the script's controls."""
    raw = params.get(KEY)
    if raw is None:
        return
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return
    if not isinstance(data, dict):
        return
    params[field_key("enable")] = True
    for name in field_names():
        if name in data:
            params[field_key(name)] = data[name]
