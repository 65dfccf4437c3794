"""X/Y/Z plot axes for the extension's fields: "[Animate Anyone] frames", "[Animate Anyone] motion scale", ...

The webui's X/Y/Z plot script keeps its axes in its module's ``axis_options`` and copies that list
into each script instance when the UI is built, so :func:`register` runs before the UI (and again
harmlessly: it replaces the axes it added before). An axis's ``apply`` gives the cell's copy of
``p`` a new dict of values (never the shared script args); the job reads it when the cell starts
(``api.args.with_overrides``): an axis of ours also enables the job. ``confirm`` checks every
value before any cell runs, and makes the list on the plot's own ``p`` that the cells' videos are
collected in (the plot keeps only its first cell's info; ours lists every cell's videos).
"""

from typing import Any, Callable, List, Optional

from ...errors import AnimateError
from ..api.args import CONTEXT_SCHEDULES, MOTION_LORA_STRENGTH, NOISE_INITS, XYZ_CELLS, XYZ_OVERRIDES, check_override
from ..errors import RequestError

PREFIX = "[Animate Anyone] "


def _number_or_text(value: str) -> Any:
    """Motion scale: a number, or keyframes (quote them in the plot's comma-separated list)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).strip()


# (label, field, the plot's value type, converter to our value, choices)
AXES = (
    ("motion module", "motion_module", str, str, "modules"),
    ("frames", "frames", int, int, None),
    ("fps", "fps", float, float, None),
    ("context length", "context_length", int, int, None),
    ("context overlap", "context_overlap", int, int, None),
    ("context schedule", "context_schedule", str, str, lambda: list(CONTEXT_SCHEDULES)),
    ("motion LoRA strength", MOTION_LORA_STRENGTH, float, float, None),
    ("motion scale", "motion_scale", str, _number_or_text, None),
    ("noise init", "noise_init", str, str, lambda: list(NOISE_INITS)),
    ("FreeInit iterations", "freeinit_iterations", int, int, None),
)


def apply_value(field: str, convert: Callable[[Any], Any]):
    def apply(p, value, _values):
        setattr(p, XYZ_OVERRIDES, {**(getattr(p, XYZ_OVERRIDES, None) or {}), field: convert(value)})

    return apply


def confirm_values(label: str, field: str, convert: Callable[[Any], Any], library_modules: Optional[Callable[[], List[str]]]):
    def confirm(p, values):
        for value in values:
            try:
                checked = check_override(field, convert(value))
            except AnimateError as e:
                raise RequestError(f"X/Y/Z plot, {PREFIX}{label} = {value!r}: {e}") from e
            if field == "motion_module" and library_modules is not None and checked not in library_modules():
                raise RequestError(f"X/Y/Z plot, {PREFIX}{label}: no motion module '{checked}' in the motion module folders")
        if not isinstance(getattr(p, XYZ_CELLS, None), list):
            setattr(p, XYZ_CELLS, [])

    return confirm


def find_xyz_module():
    from modules import scripts

    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "xy_grid.py") and hasattr(data, "module"):
            return data.module
    return None


def register(library_modules: Callable[[], List[str]]) -> None:
    """Add (or replace) the axes in the X/Y/Z plot's list; nothing when that script is not loaded."""
    module = find_xyz_module()
    if module is None:
        return
    options = [o for o in module.axis_options if not str(getattr(o, "label", "")).startswith(PREFIX)]
    for label, field, kind, convert, choices in AXES:
        if choices == "modules":
            choices = library_modules
        options.append(module.AxisOption(PREFIX + label, kind, apply_value(field, convert),
                                         confirm=confirm_values(label, field, convert, library_modules), choices=choices))
    module.axis_options[:] = options
