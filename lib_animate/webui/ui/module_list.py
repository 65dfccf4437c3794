"""The motion-module dropdowns list the modules made for the selected checkpoint, and follow it.

An SD1.5 module cannot run on an SDXL checkpoint or the reverse, so the accordion's dropdowns show
the modules of the selected checkpoint's family (and the files whose family their tensor names do not
tell). When the checkpoint changes in the quick settings, the dropdowns are updated: the family comes
from the selected checkpoint's file (its tensor names), so it does not depend on when the webui has
finished loading it.
"""

from typing import Any, Callable, List, Optional

from ..jobs import model_kind

CHECKPOINT_ELEM_ID = "setting_sd_model_checkpoint"  # the webui's checkpoint dropdown (modules/ui_settings.py)


def checkpoint_family(title: Optional[str]) -> Optional[str]:
    """``model_kind.SD1`` / ``SDXL`` of the checkpoint called ``title``; None when unknown (no filter)."""
    from modules import sd_models

    info = sd_models.get_closet_checkpoint_match(title) if title else None
    if info is None:
        return None
    loaded = getattr(sd_models.model_data, "sd_model", None)  # never triggers a load
    if loaded is not None and getattr(getattr(loaded, "sd_checkpoint_info", None), "filename", None) == info.filename:
        return model_kind.family(loaded)
    return model_kind.checkpoint_file_family(info.filename)


def selected_family() -> Optional[str]:
    from modules import shared

    return checkpoint_family(shared.opts.data.get("sd_model_checkpoint"))


class ModuleDropdowns:
    """The accordions' motion-module dropdowns (txt2img, img2img); an ``on_after_component`` callback
    that, once the webui's checkpoint dropdown exists, updates them whenever it changes."""

    def __init__(self, library_now: Callable[[], Any]):
        self.library_now = library_now  # () -> MotionLibrary with the current settings
        self.dropdowns: List[Any] = []

    def add(self, dropdown) -> None:
        self.dropdowns.append(dropdown)

    def __call__(self, component, **kwargs) -> None:
        if kwargs.get("elem_id") == CHECKPOINT_ELEM_ID and self.dropdowns:
            component.change(fn=self.update, inputs=[component] + self.dropdowns, outputs=self.dropdowns,
                             show_progress=False)

    def update(self, title: str, *current: str) -> list:
        import gradio as gr

        names = self.library_now().modules(checkpoint_family(title))
        return [gr.Dropdown.update(choices=names, value=value if value in names else (names[0] if names else None))
                for value in current]
