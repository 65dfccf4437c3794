"""The extension's entry in the webui's infotext (generation parameters), and reading it back.

Written as one key, ``Animate Anyone: {json}`` (the webui quotes values that contain commas or
colons and unquotes them when parsing). Reading it back, each of the script's controls gets its
field from that JSON (``pasted_fields``).
"""

import json
from typing import Any, Dict

from .args import AnimateArgs, field_names

KEY = "Animate Anyone"


def encode(args: AnimateArgs, extra: Dict[str, Any] = None) -> str:
    data = args.as_infotext_dict()
    data.update(extra or {})
    return json.dumps(data, separators=(", ", ": "))


def pasted_fields(params: Dict[str, Any]) -> Dict[str, Any]:
    """The fields stored in a parsed infotext (``{}`` when it has no entry of ours).

    Used by the controls' paste getters: they run both when a person pastes an infotext into the
    UI and when an API request carries an ``infotext`` field (which runs no paste callbacks).
    """
    raw = params.get(KEY)
    if raw is None:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    fields = {name: data[name] for name in field_names() if name in data}
    fields["enable"] = True
    return fields
