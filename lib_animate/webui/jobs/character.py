"""The AnimateDiff mode's character option: the user's own checkpoint (LoRAs, embeddings, prompt)
animates the character of ``reference_image`` doing the moves of a pose input.

* **Moves**: the pose input (skeleton video, pose images, OpenPose JSON, or a person video with
  the DWPose files), optionally retargeted to the reference's body, is rendered as skeleton frames
  at the generation size and becomes the control source of the enabled ControlNet units without an
  input of their own -- an OpenPose model with the preprocessor "none" (the frames are skeletons
  already). ControlNet's reference-only units are refused: they would hook the same attention.
* **Look**: reference attention from the loaded UNet itself (:mod:`lib_animate.reference.self_reference`).
  Once per denoiser evaluation, before its first UNet call, the UNet runs on the reference latent
  (VAE posterior mean at the call's latent size, so the hires pass gets its own) noised to the
  evaluation's sigma with one noise per video, ``(z_ref + sigma * eps) * c_in(sigma)`` at
  ``t(sigma)`` from the sampler's own denoiser (timestep samplers: ``sqrt(a) z + sqrt(1 - a) eps``
  at their timestep), with an empty-prompt context computed once per job. The pass has batch 1 and
  bypasses the motion modules (scale 0, one frame), the context windows (it calls the UNet, not
  the denoiser) and ControlNet (the UNet class's forward, not ControlNet's instance-level hook).
  ``reference_noise`` "clean" runs it once per video and size at t = 0 instead.
"""

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ...motion.scale import MotionScale
from ...reference.self_reference import SelfReference, noise_for_video, reference_input
from ..errors import RequestError
from . import low_vram
from .aa_inputs import decode_image, encode_reference_latent, load_pose_clip, reference_keypoints
from .video_inputs import POSE_SOURCE_NAME

Size = Tuple[int, int]


class Character:
    def __init__(self, p, args, settings, layout):
        self.p, self.args, self.settings, self.layout = p, args, settings, layout
        self.reference = None  # PIL image
        self.pose_frames: List[np.ndarray] = []
        self.empty_context: Optional[torch.Tensor] = None
        self.latents: Dict[Size, torch.Tensor] = {}
        self.noises: Dict[Size, torch.Tensor] = {}
        self.clean_banks: Dict[Size, object] = {}
        self.attention: Optional[SelfReference] = None
        self.unet = None
        self.injection = None
        self.seed: Optional[int] = None
        self.due = None  # (sigma rows, inner model) of the denoiser evaluation whose pass has not run yet
        self.evaluations = 0
        self.passes = 0

    @property
    def active(self) -> bool:
        return self.args.reference_strength > 0

    # --- before the webui builds prompts and seeds ------------------------------------------------

    def load_inputs(self, limits, decode_base64) -> List[np.ndarray]:
        """The reference image and the skeleton frames for the OpenPose unit (retargeted if asked)."""
        p, args = self.p, self.args
        self.reference = decode_image(args.reference_image, "reference_image", decode_base64)
        retarget_to = reference_keypoints(args, self.reference, limits) if args.retarget else None
        clip = load_pose_clip(args, p.width, p.height, limits, decode_base64, retarget_to=retarget_to)
        self.pose_frames = list(clip.frames)
        return self.pose_frames

    @staticmethod
    def check_plan(plan) -> None:
        """The units that take the poses use the preprocessor "none"; no reference-only unit. (That some
        unit takes them at all, plan_units already made sure.)"""
        units = plan.units if plan is not None else []
        for unit in units:
            module = str(unit.unit.module).lower()
            if module.startswith("reference"):
                raise RequestError(f"{unit.label}: ControlNet's reference-only hooks the same self-attention as the character "
                                   f"option's reference; disable it (the character's look comes from 'reference_image')")
            if unit.per_frame is not None and unit.per_frame.name == POSE_SOURCE_NAME and module not in ("none", ""):
                raise RequestError(f"{unit.label} would get the character's poses, which are skeleton frames already: set its "
                                   f"preprocessor to 'none' (with an OpenPose model)")

    # --- once the model is final ------------------------------------------------------------------

    def prepare(self) -> None:
        from modules import devices

        if not self.active:
            return
        with torch.no_grad(), devices.autocast():
            self.empty_context = self.p.sd_model.get_learned_conditioning([""])
            self._latent((self.p.height // 8, self.p.width // 8))

    def _latent(self, size: Size) -> torch.Tensor:
        """The reference's VAE posterior mean at latent ``size`` (h, w), times the scale factor."""
        if size not in self.latents:
            h, w = size
            self.latents[size] = encode_reference_latent(self.p.sd_model, self.reference, w * 8, h * 8, self.args.fit)
        return self.latents[size]

    # --- sampling ---------------------------------------------------------------------------------

    def sampling(self, stack, unet, injection) -> None:
        """Install the record/attend hooks for this batch's sampling (one video)."""
        if not self.active:
            return
        seed = int(self.p.seeds[0])
        if seed != self.seed:  # another video: its own noise and clean banks
            self.seed, self.noises, self.clean_banks = seed, {}, {}
        self.unet, self.injection = unet, injection
        self.attention = SelfReference(unet, self.layout, self.args.reference_strength, self.args.style_fidelity)
        stack.callback(self._end_batch)
        stack.enter_context(self.attention.installed())

    def on_cfg_denoiser(self, params) -> None:
        self.evaluations += 1
        if self.attention is not None:
            self.due = (params.sigma, params.denoiser.inner_model)

    def before_unet_call(self, x: torch.Tensor) -> None:
        """The first UNet call of a denoiser evaluation runs the reference pass first (errors here reach
        the job; the webui would swallow them in its callback)."""
        if self.due is None or self.attention is None:
            return
        sigma, inner = self.due
        self.due = None
        size = tuple(int(v) for v in x.shape[-2:])
        if self.args.reference_noise == "clean" and size in self.clean_banks:
            self.attention.bank = self.clean_banks[size]
            return
        z = self._latent(size).to(x.device, x.dtype)
        if self.args.reference_noise == "clean":
            x_in, t = z, torch.zeros(1, dtype=torch.long, device=x.device)
        else:
            x_in, t = self._noised(z, sigma[:1], inner, size)
        context = self.empty_context.to(x.device, x.dtype)
        bank = self._record(x_in.to(x.dtype), t, context)
        if self.args.reference_noise == "clean":
            self.clean_banks[size] = bank

    def _noised(self, z: torch.Tensor, sigma: torch.Tensor, inner, size: Size):
        if size not in self.noises:
            self.noises[size] = noise_for_video(self.seed, z.shape)
        eps = self.noises[size].to(z.device, z.dtype)
        if hasattr(inner, "get_scalings"):  # k-diffusion: sigma, c_in and t from the sampler's own schedule
            c_in = inner.get_scalings(sigma)[-1]
            view = (-1, 1, 1, 1)
            return reference_input(z, eps, sigma.view(view).to(z.dtype), c_in.view(view).to(z.dtype)), inner.sigma_to_t(sigma)
        # timestep samplers (DDIM, PLMS, UniPC): "sigma" is the timestep, the schedule is the model's
        a = inner.inner_model.alphas_cumprod[sigma.long()].to(z.device, z.dtype).view(-1, 1, 1, 1)
        return a.sqrt() * z + (1 - a).sqrt() * eps, sigma

    def _record(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor):
        layout, injection = self.layout, self.injection
        saved = (layout.frames, layout.roles, layout.window, injection.scale if injection is not None else None)
        layout.set_frames(1)
        layout.set_roles(None)
        layout.window = None
        if injection is not None:
            injection.scale = MotionScale(0.0)  # the motion modules step aside for the one reference row
        try:
            unet = self.unet
            if low_vram.mode(self.p.sd_model) == "medvram":
                # the webui's hook on sd_model.model moves the UNet in, but this pass calls the UNet itself and
                # comes first in its evaluation; --lowvram's hooks sit on the UNet's own parts and fire here
                low_vram.send_to_device(self.p.sd_model.model)
            with torch.no_grad():
                return self.attention.record(lambda: type(unet).forward(unet, x_in, t.to(x_in.device), context=context))
        finally:
            layout.set_frames(saved[0])
            layout.set_roles(saved[1])
            layout.window = saved[2]
            if injection is not None:
                injection.scale = saved[3]

    def _end_batch(self) -> None:
        if self.attention is not None:
            self.passes += self.attention.passes
        self.attention, self.due = None, None

    def info(self) -> dict:
        """Reference passes equal denoiser evaluations with reference_noise "step"; one per video and
        size with "clean"; 0 with strength 0."""
        return {"character": True, "reference_passes": self.passes, "denoiser_evaluations": self.evaluations,
                "pose_frames": len(self.pose_frames)}
