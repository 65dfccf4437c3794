"""The webui's ``--medvram`` / ``--lowvram`` policy, applied to the modules a video job brings.

In those modes the webui keeps one model part at a time on the GPU: a forward pre-hook on each
part moves it to the device and the part that was there before (``modules.lowvram.module_in_gpu``)
back to the CPU. ``--medvram`` hooks whole models (the text encoder, the VAE, ``sd_model.model``
with its UNet); ``--lowvram`` also splits the UNet into ``time_embed``, each input block, the
middle block and each output block, and keeps the UNet's small remainder on the device.

A job's own modules follow the same policy, sharing that one ``module_in_gpu`` so theirs and the
webui's evict each other:

* the Animate Anyone CLIP encoder and pose guider (once per video) and the reference UNet (once
  per pass): on the device only while they run;
* the Animate Anyone denoising UNet, swapped in as ``sd_model.model.diffusion_model``: with
  ``--medvram`` the webui's own hook on ``sd_model.model`` moves it (it is inside); with
  ``--lowvram`` it gets the hooks the webui puts on its own UNet's parts. The reference UNet gets
  the same split;
* motion modules live inside the UNet's blocks and move with them.

Everything comes back out when the job's context exits: the hooks are removed and nothing of the
job stays registered or on the device. In these modes the job loads its weights to the CPU.
"""

from contextlib import contextmanager
from typing import Iterable, List, Optional

import torch.nn as nn

UNET_PARTS = ("time_embed", "input_blocks", "middle_block", "output_blocks")


def mode(sd_model=None) -> Optional[str]:
    """"lowvram", "medvram" or None, as the webui applied it to the loaded model (``--medvram-sdxl``
    counts for SDXL models only, so the model's own flag decides)."""
    from modules import shared

    model = sd_model if sd_model is not None else shared.sd_model
    if model is None or not getattr(model, "lowvram", False):
        return None
    return "lowvram" if getattr(shared.cmd_opts, "lowvram", False) else "medvram"


def weights_device(sd_model=None):
    """Where a job loads its own weights: the CPU in the low-VRAM modes (the hooks move them)."""
    from modules import devices

    return devices.cpu if mode(sd_model) else devices.device


def send_to_device(module: nn.Module) -> None:
    """The webui's ``send_me_to_gpu`` for one of our modules: it goes to the device, the module
    there before goes to the CPU."""
    from modules import devices, lowvram

    if lowvram.module_in_gpu is module:
        return
    if lowvram.module_in_gpu is not None:
        lowvram.module_in_gpu.to(lowvram.cpu)
    module.to(devices.device)
    lowvram.module_in_gpu = module


def evict() -> None:
    """Whatever module the policy has on the device goes to the CPU (the next hook moves its own)."""
    from modules import lowvram

    lowvram.send_everything_to_cpu()


def unet_parts(unet: nn.Module) -> List[nn.Module]:
    """The parts the webui's ``--lowvram`` moves one at a time, in its order."""
    return [unet.time_embed, *unet.input_blocks, unet.middle_block, *unet.output_blocks]


def _remainder(unet: nn.Module) -> List[nn.Module]:
    """The UNet's children outside :data:`UNET_PARTS` (``out``): kept on the device, as the webui does."""
    return [child for name, child in unet.named_children() if name not in UNET_PARTS]


class Placement:
    """The hooks one job registers; :meth:`remove` undoes all of them."""

    def __init__(self):
        self.handles = []
        self.modules: List[nn.Module] = []
        self.remainders: List[nn.Module] = []

    def hook(self, module: nn.Module) -> None:
        self.handles.append(module.register_forward_pre_hook(lambda m, _args: send_to_device(m)))
        self.modules.append(module)

    def hook_whole(self, modules: Iterable[nn.Module]) -> None:
        for module in modules:
            self.hook(module)

    def hook_unet(self, unet: nn.Module, split: bool) -> None:
        """``split``: the webui's ``--lowvram`` pattern; else the whole UNet moves as one."""
        from modules import devices

        if not split:
            self.hook(unet)
            return
        for part in unet_parts(unet):
            self.hook(part)
        for child in _remainder(unet):
            child.to(devices.device)
            self.remainders.append(child)

    def remove(self) -> None:
        from modules import devices, lowvram

        for handle in self.handles:
            handle.remove()
        if any(lowvram.module_in_gpu is module for module in self.modules):
            evict()
        for child in self.remainders:
            child.to(devices.cpu)
        self.handles, self.modules, self.remainders = [], [], []


@contextmanager
def modules_on_device_while_running(modules: Iterable[nn.Module], sd_model=None):
    """Modules that run once (CLIP encoder, pose guider): moved in by their first forward, out on exit.
    Nothing is registered outside the low-VRAM modes."""
    placement = Placement()
    if mode(sd_model):
        placement.hook_whole(modules)
    try:
        yield placement
    finally:
        placement.remove()


@contextmanager
def job_unets(sd_model, swapped_unet: Optional[nn.Module] = None, reference_unet: Optional[nn.Module] = None):
    """The sampling part of a job in the low-VRAM modes (nothing otherwise).

    Enter after the motion modules are injected and ``swapped_unet`` (if any) is in place, so
    that on exit the eviction moves them out before they are taken away: the module on the
    device goes to the CPU first (an injected motion module must not find its block marked as
    already on the device), then the hooks are installed; on exit, hooks off, everything out.
    """
    current = mode(sd_model)
    placement = Placement()
    if current:
        evict()
        if swapped_unet is not None and current == "lowvram":
            placement.hook_unet(swapped_unet, split=True)  # medvram: inside sd_model.model, the webui's hook moves it
        if reference_unet is not None:
            placement.hook_unet(reference_unet, split=current == "lowvram")
    try:
        yield placement
    finally:
        if current:
            placement.remove()
            evict()
