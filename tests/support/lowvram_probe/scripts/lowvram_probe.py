"""TEST ONLY (linked into the e2e webui's extensions/, never part of the extension): records which
module the webui's --medvram / --lowvram policy has on the device (``modules.lowvram.module_in_gpu``)
while a request runs, so a test on a CPU-only machine (``--use-cpu all``) can see what would move.

``POST /animate-test/lowvram-probe/start`` installs global forward hooks that note every change of
``module_in_gpu``; ``GET /animate-test/lowvram-probe/trace`` removes them and answers the changes
in order, each labelled by its path in ``shared.sd_model`` ("model.diffusion_model.input_blocks.3",
"first_stage_model", ...) or, for modules outside the webui's model, by ``outside:<class name>``;
plus the label of the module there now and the number of forward pre-hooks on each part of the
model's UNet as it is now.
"""

import torch
from modules import lowvram, script_callbacks, shared

_state = {"handles": [], "trace": [], "last": None}


def _label(module) -> str:
    if module is None:
        return "none"
    model = shared.sd_model
    if model is not None:
        if module is model:
            return "sd_model"
        for name, candidate in model.named_modules():
            if candidate is module:
                return name
    return f"outside:{type(module).__name__}"


def _note(*_args) -> None:
    current = lowvram.module_in_gpu
    if current is not _state["last"]:
        _state["last"] = current
        _state["trace"].append(_label(current))


def _start():
    _stop()
    _state["trace"], _state["last"] = [], lowvram.module_in_gpu
    _state["handles"] = [torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: _note()),
                         torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: _note())]
    return {"started": True}


def _stop():
    for handle in _state["handles"]:
        handle.remove()
    _state["handles"] = []


def _trace():
    _stop()
    unet = shared.sd_model.model.diffusion_model
    parts = [unet.time_embed, *unet.input_blocks, unet.middle_block, *unet.output_blocks]
    return {"trace": _state["trace"], "now": _label(lowvram.module_in_gpu),
            "unet_part_pre_hooks": [len(part._forward_pre_hooks) for part in parts],
            "unet_pre_hooks": len(unet._forward_pre_hooks), "model_lowvram": bool(getattr(shared.sd_model, "lowvram", False))}


def _routes(_demo, app):
    app.add_api_route("/animate-test/lowvram-probe/start", _start, methods=["POST"])
    app.add_api_route("/animate-test/lowvram-probe/trace", _trace, methods=["GET"])


script_callbacks.on_app_started(_routes)
