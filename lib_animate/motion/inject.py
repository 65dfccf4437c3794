"""Put motion modules into an ldm UNet for the duration of a ``with`` block.

Placement (research/animatediff.md §1.7), for the SD1.5 layout at any width:

* ``down_blocks.i.motion_modules.j`` -> appended to the j-th ResBlock input block of level i;
* ``up_blocks.i.motion_modules.j``   -> the j-th output block of level i, after its ResBlock /
  SpatialTransformer and before its Upsample;
* ``mid_block.motion_modules.0``     -> middle block, between the SpatialTransformer and the
  second ResBlock.

``TimestepEmbedSequential`` calls an unknown layer as ``layer(x)``, so each inserted wrapper reads
the clip length from the job's :class:`~lib_animate.sampling.layout.FrameLayout`.

Leaving the block restores every touched container's exact child list (same keys, same order,
same objects) and removes every hook, on success and on any exception, so the UNet's module
tree, ``state_dict`` and output are bit-identical to before.
"""

from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Iterator, List, Optional, Tuple

from torch import nn

from ..errors import IncompatibleModelError, InvalidInputError
from ..sampling.layout import FrameLayout
from .groupnorm import cross_frame_group_norm
from .model import MotionModel, MotionModule
from .scale import MotionScale

# Set on a UNet while an injection is active (removed on exit).
ACTIVE_ATTRIBUTE = "_lib_animate_motion_injection"


class InjectedMotionModule(nn.Module):
    """What sits inside the UNet's block: a motion module plus the injection it reads the frame
    layout and the motion scale from."""

    is_lib_animate_motion = True

    def __init__(self, module: MotionModule, injection: "Injection"):
        super().__init__()
        self.module = module
        self.layout = injection.layout
        self.injection = [injection]  # in a list: not a submodule, no state_dict entries

    def forward(self, x):
        scale = self.injection[0].scale
        if scale.uniform == 1.0:
            return self.module(x, self.layout.frames)
        if scale.uniform == 0.0:
            return x  # the image model alone: the module is skipped
        return self.module(x, self.layout.frames, scale.rows(self.layout, x.shape[0], x.device, x.dtype))


class Injection:
    """Handle returned by :func:`inject`: the layout (set ``frames`` for context windows), the
    model, and ``scale`` (a :class:`~lib_animate.motion.scale.MotionScale`, 1 by default)."""

    def __init__(self, motion_model: MotionModel, layout: FrameLayout, scale: Optional[MotionScale] = None):
        self.motion_model = motion_model
        self.layout = layout
        self.scale = scale if scale is not None else MotionScale(1.0)

    @property
    def frames(self) -> int:
        return self.layout.frames

    @frames.setter
    def frames(self, value: int) -> None:
        _check_frames(self.motion_model, value)
        self.layout.set_frames(value)


def _check_frames(motion_model: MotionModel, frames: int) -> None:
    if int(frames) < 1:
        raise InvalidInputError(f"frames must be at least 1, got {frames}")
    if int(frames) > motion_model.max_frames:
        raise InvalidInputError(
            f"{frames} frames in one motion window exceed the maximum of {motion_model.max_frames} for "
            f"'{motion_model.name or motion_model.version}'; use context windows of at most "
            f"{motion_model.max_frames} frames"
        )


# --- UNet structure ---------------------------------------------------------------------------

def _kind(layer: nn.Module) -> str:
    """'ResBlock', 'Upsample', 'Downsample' or the class name (subclasses and wrappers named
    ...Upsample, such as Animate Anyone's skip-sized one, count as Upsample)."""
    name = type(layer).__name__
    for kind in ("Upsample", "Downsample"):
        if name.endswith(kind):
            return kind
    return name


def _input_levels(unet) -> List[List[nn.Module]]:
    """Input blocks that contain a ResBlock, grouped by resolution level."""
    levels: List[List[nn.Module]] = [[]]
    for block in list(unet.input_blocks)[1:]:
        if any(_kind(layer) == "Downsample" for layer in block):
            levels.append([])
        elif any(_kind(layer) == "ResBlock" for layer in block):
            levels[-1].append(block)
    return levels


def _output_levels(unet) -> List[List[nn.Module]]:
    """Output blocks grouped by level (deepest first); a level ends with its Upsample."""
    levels: List[List[nn.Module]] = [[]]
    blocks = list(unet.output_blocks)
    for n, block in enumerate(blocks):
        levels[-1].append(block)
        if _kind(block[-1]) == "Upsample" and n != len(blocks) - 1:
            levels.append([])
    return levels


def _block_channels(block: nn.Module) -> int:
    for layer in block:
        if _kind(layer) == "ResBlock":
            return layer.out_channels
    raise IncompatibleModelError("a UNet block meant for a motion module has no ResBlock")


Placement = Tuple[nn.Module, int, MotionModule]  # (container, insert position, module)


def _plan(unet: nn.Module, motion_model: MotionModel) -> List[Placement]:
    """Where each module goes; raises IncompatibleModelError before anything is changed."""
    plan: List[Placement] = []
    label = motion_model.name or motion_model.version

    def place(kind: str, blocks_by_level: List[List[nn.Module]], position_of) -> None:
        modules = motion_model.modules_at(kind)
        levels = {slot.level for slot, _ in modules}
        if len(levels) != len(blocks_by_level):
            raise IncompatibleModelError(
                f"'{label}' has {len(levels)} {kind} levels of motion modules but the UNet has "
                f"{len(blocks_by_level)}; is the checkpoint of the same family (SD1.5 / SDXL)?"
            )
        for slot, module in modules:
            level_blocks = blocks_by_level[slot.level]
            if slot.index >= len(level_blocks):
                raise IncompatibleModelError(
                    f"'{label}' has more motion modules at {kind} level {slot.level} than the UNet has blocks there"
                )
            block = level_blocks[slot.index]
            channels = _block_channels(block)
            if channels != module.channels:
                raise IncompatibleModelError(
                    f"'{label}' is for a UNet with {module.channels} channels at {kind} level {slot.level}, "
                    f"but the loaded checkpoint has {channels}; the motion module and the checkpoint "
                    f"belong to different model families"
                )
            plan.append((block, position_of(block), module))

    place("down", _input_levels(unet), lambda block: len(block))
    place("up", _output_levels(unet), lambda block: len(block) - 1 if _kind(block[-1]) == "Upsample" else len(block))
    mid = motion_model.modules_at("mid")
    if mid:
        (_, module), = mid
        if _block_channels(unet.middle_block) != module.channels:
            raise IncompatibleModelError(
                f"'{label}' mid-block module has {module.channels} channels, the UNet's middle block "
                f"{_block_channels(unet.middle_block)}"
            )
        plan.append((unet.middle_block, len(unet.middle_block) - 1, module))
    return plan


def _containers(unet: nn.Module) -> List[nn.Module]:
    return list(unet.input_blocks) + [unet.middle_block] + list(unet.output_blocks)


def _set_children(container: nn.Module, children: List[nn.Module]) -> None:
    container._modules.clear()
    container._modules.update((str(i), child) for i, child in enumerate(children))


def remove_stale_modules(unet: nn.Module) -> int:
    """Remove motion modules a crashed process left behind (not those of an active injection)."""
    if getattr(unet, ACTIVE_ATTRIBUTE, None) is not None:
        return 0
    removed = 0
    for container in _containers(unet):
        children = list(container._modules.values())
        kept = [c for c in children if not getattr(c, "is_lib_animate_motion", False)]
        if len(kept) != len(children):
            removed += len(children) - len(kept)
            _set_children(container, kept)
    return removed


def check_compatible(unet: nn.Module, motion_model: MotionModel) -> None:
    """Raise IncompatibleModelError if ``motion_model`` cannot go into ``unet`` (changes nothing)."""
    levels = len(_input_levels(unet))
    if (levels == 3) != motion_model.sdxl:
        kinds = {3: "an SDXL", 4: "an SD1.5"}
        raise IncompatibleModelError(
            f"'{motion_model.name or motion_model.version}' is {'an SDXL' if motion_model.sdxl else 'an SD1.5'} motion "
            f"module ({motion_model.family.description}) but the loaded checkpoint's UNet is "
            f"{kinds.get(levels, f'a {levels}-level')} UNet; choose a motion module made for the checkpoint's family"
        )
    _plan(unet, motion_model)


# --- the context manager ----------------------------------------------------------------------

@contextmanager
def inject(unet: nn.Module, motion_model: MotionModel, frames: int, layout: Optional[FrameLayout] = None,
           scale: Optional[MotionScale] = None) -> Iterator[Injection]:
    """Inject ``motion_model`` into ``unet`` while the ``with`` block runs.

    Inside, ``unet(x, timesteps, context)`` with ``x.shape[0] % frames == 0`` applies temporal
    attention within each consecutive run of ``frames`` rows. ``layout`` lets other hooks of the
    same job share the frame layout (its ``frames`` is set to ``frames``). The motion model's
    device and dtype are the caller's business (modules inside the UNet's blocks move with them).
    """
    if getattr(unet, ACTIVE_ATTRIBUTE, None) is not None:
        raise RuntimeError("motion modules are already injected into this UNet; leave the first injection before injecting again")
    check_compatible(unet, motion_model)
    _check_frames(motion_model, frames)
    remove_stale_modules(unet)
    plan = _plan(unet, motion_model)
    layout = layout if layout is not None else FrameLayout(frames)
    layout.set_frames(frames)

    saved = [(c, OrderedDict(c._modules)) for c in {id(c): c for c, _, _ in plan}.values()]
    injection = Injection(motion_model, layout, scale)
    try:
        with ExitStack() as stack:
            for container, position, module in plan:  # one module per container
                children = list(container._modules.values())
                children.insert(position, InjectedMotionModule(module, injection))
                _set_children(container, children)
            setattr(unet, ACTIVE_ATTRIBUTE, injection)
            if motion_model.family.cross_frame_unet_norm:
                stack.enter_context(cross_frame_group_norm(unet, layout))
            yield injection
    finally:
        for container, children in saved:
            container._modules.clear()
            container._modules.update(children)
        if ACTIVE_ATTRIBUTE in unet.__dict__:
            delattr(unet, ACTIVE_ATTRIBUTE)
