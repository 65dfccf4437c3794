"""TEST ONLY (linked into the e2e webui's extensions/, never part of the extension): sd-webui-controlnet
1.1.455 builds every SD1 ControlNet from a hard-coded config of width 320; the tiny test checkpoint
has width 32. ControlNet deep-copies that module-level dict on every model build, so setting the
width here, once ControlNet's scripts are loaded, makes it build the tiny test ControlNet."""

import sys

from modules import script_callbacks

TINY_WIDTH = 32


def size_for_tiny_checkpoint(*_args):
    guess = sys.modules.get("scripts.controlnet_model_guess")
    if guess is not None:
        guess.controlnet_default_config["model_channels"] = TINY_WIDTH
        print(f"[test] sd-webui-controlnet's SD1 ControlNet config: model_channels={TINY_WIDTH}")


size_for_tiny_checkpoint()
script_callbacks.on_app_started(size_for_tiny_checkpoint)
