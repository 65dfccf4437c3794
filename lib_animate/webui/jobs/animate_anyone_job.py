"""Animate Anyone mode: a reference image and a pose sequence give a video of that character.

The user's checkpoint is never modified: for the job a separate ldm UNet holding the release's
denoising weights takes the place of ``sd_model.model.diffusion_model`` (the webui's VAE, queue,
progress, interrupt and saving are reused), with

* the motion module injected by the motion engine,
* reference attention: the ReferenceNet runs once per sampling pass per video (batch 1, t = 0,
  clean reference latent) and every cond row's self-attention also attends to its tokens; uncond
  rows do plain self-attention,
* pose guider features added after the first conv (cond and uncond rows),
* the CLIP image embedding of the reference as the cross-attention context of cond rows and
  zeros for uncond rows, whatever the prompt box holds,
* v-prediction with the zero-terminal-SNR linear schedule for the webui's samplers, or the exact
  "Animate Anyone DDIM" sampler (default).

Which chunk of a UNet call is cond or uncond comes from the webui's call order (cond rows first,
then uncond; ``denoiser.chunk_roles``), whether it batches cond and uncond or runs them separately.
"""

import os
from contextlib import ExitStack, nullcontext
from typing import Optional

import torch

from ...motion import check_compatible, inject
from ...reference.image_encoder import encode_reference
from ...reference.pose_features import PoseFeatures
from ...reference.reference_attention import ReferenceNet, without_memory_efficient_sdpa
from ...reference.sampling_pass import animate_anyone_pass
from ...sampling.schedules import ANIMATE_ANYONE, with_finite_terminal_snr
from . import aa_sampler, low_vram, model_kind
from ..api import infotext
from .aa_inputs import PoseLimits, decode_image, encode_reference_latent, load_pose_clip, reference_keypoints
from ..api.args import AA_DDIM
from ..controlnet.controlnet_units import enabled_unit_numbers
from ..errors import RequestError
from .job import VideoJob
from .model_state import ModelState

DEFAULT_CONTEXT_LENGTH = 24  # the length the motion module was fine-tuned on
EXTRA_NETWORK_TAG = ("lora", "lyco", "hypernet")


def pose_limits(settings) -> PoseLimits:
    """Where pose sequences may come from and how long they may be (the job and the tab's preview)."""
    from modules import paths, shared

    controlnet_dir = shared.opts.data.get("control_net_modules_path") or ""
    return PoseLimits(
        max_frames=settings.max_pose_frames,
        dwpose_dir=settings.dwpose_dir,
        webui_root=paths.script_path,
        extra_dwpose_dirs=tuple(d for d in (os.path.join(controlnet_dir, "openpose") if controlnet_dir else "",) if d),
        animate_anyone_dirs=(settings.weights_dir,),
    )


def latent_pixel_size(p):
    """The size the webui samples at: its latents are width // 8 x height // 8, so poses and the
    reference are prepared at that size times 8 (the pose guider's features then match the latent)."""
    return p.width // 8 * 8, p.height // 8 * 8


class AnimateAnyoneJob(VideoJob):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reference = None  # PIL image
        self.pose_clip = None
        self.weights = None
        self.image_embeds: Optional[torch.Tensor] = None
        self.reference_latent: Optional[torch.Tensor] = None
        self.pose: Optional[PoseFeatures] = None
        self.reference_net: Optional[ReferenceNet] = None

    @property
    def frames(self) -> int:
        return len(self.pose_clip.frames) if self.pose_clip is not None else 1

    @property
    def fps(self) -> float:
        if "fps" in self.args.given or self.pose_clip is None:
            return self.args.fps
        return self.pose_clip.fps

    # --- before the webui builds prompts and seeds ------------------------------------------------

    def _validate(self) -> None:
        from modules import extra_networks
        from modules.api.api import decode_base64_to_image

        p, args = self.p, self.args
        if self.is_img2img:
            raise RequestError("Animate Anyone mode runs in txt2img (the reference image is its own field); use the txt2img tab or /sdapi/v1/txt2img")
        if getattr(p, "enable_hr", False):
            raise RequestError("hires fix is not supported in Animate Anyone mode; generate at the final size instead")
        units = enabled_unit_numbers(p)
        if units:
            raise RequestError(
                f"ControlNet unit(s) {', '.join(map(str, units))} are enabled: the Animate Anyone mode has its own pose guider "
                f"(give the poses as 'pose_video', 'pose_frames' or 'pose_json'); disable the ControlNet units, or use the "
                f"AnimateDiff mode to drive ControlNet with a control video"
            )
        prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt]
        for prompt in prompts:
            _, networks = extra_networks.parse_prompt(prompt or "")
            used = sorted(name for name in networks if name in EXTRA_NETWORK_TAG)
            if used:
                raise RequestError(
                    f"<{used[0]}:...> tags are not used in Animate Anyone mode: its UNet is retrained as a whole, "
                    f"so image LoRAs do not apply. Remove them (LoRAs belong to the AnimateDiff mode)."
                )
        self.reference = decode_image(args.reference_image, "reference_image", decode_base64_to_image)
        width, height = latent_pixel_size(p)
        limits = pose_limits(self.settings)
        retarget_to = reference_keypoints(args, self.reference, limits) if args.retarget else None
        self.pose_clip = load_pose_clip(args, width, height, limits, decode_base64_to_image, retarget_to=retarget_to)
        self.layout.set_frames(self.frames)
        self._choose_sampler()

    def _choose_sampler(self) -> None:
        from modules import sd_samplers

        p, name = self.p, self.args.sampler or AA_DDIM
        if name.lower() in (AA_DDIM, aa_sampler.NAME.lower()):
            aa_sampler.register()
            p.sampler_name = aa_sampler.NAME
            return
        canonical = sd_samplers.samplers_map.get(name.lower())
        if canonical is None:
            known = ", ".join([AA_DDIM] + [s.name for s in sd_samplers.all_samplers if s.name != aa_sampler.NAME])
            raise RequestError(f"unknown sampler '{name}' for Animate Anyone mode; use one of: {known}")
        p.sampler_name = canonical

    # --- once the model is final --------------------------------------------------------------------

    def _prepare(self) -> None:
        from modules import devices, shared

        p, args = self.p, self.args
        model_kind.check_sd1_only(p.sd_model, "The Animate Anyone mode (it also reuses the checkpoint's VAE)")
        self._check_no_unet_replacement()
        device = shared.device
        dtype = devices.dtype_unet
        self._hold_cache()
        # in the low-VRAM modes the weights load to the CPU and the webui's policy moves them (low_vram.py)
        self.weights = self.environment.cache.animate_anyone(self.settings.weights_dir, low_vram.weights_device(p.sd_model), dtype)
        models = self.weights.models
        motion = self.weights.motion_model
        check_compatible(models.denoising_unet, motion)
        length = self._context_windows(args.context_length or min(DEFAULT_CONTEXT_LENGTH, motion.max_frames),
                                       motion.max_frames, "motion_module.pth")
        self._prepare_motion()

        with torch.no_grad(), low_vram.modules_on_device_while_running([models.image_encoder, models.pose_guider], p.sd_model):
            self.image_embeds = encode_reference(models.image_encoder, self.reference, device).to(device, dtype)
            self.reference_latent = encode_reference_latent(p.sd_model, self.reference, *latent_pixel_size(p),
                                                            args.fit).to(dtype)
            # on the host, one window's frames at a time on the device (memory flat in the frames)
            self.pose = PoseFeatures.encode(models.pose_guider, self.pose_clip.frames, device, dtype)
        self.reference_net = ReferenceNet(models.reference_unet, torch.float16 if self.settings.reference_fp16 else None)

        self.model_state = ModelState(p.sd_model)
        # The webui's own samplers need a finite sigma_max: the webui's zero-SNR clamp; the exact
        # sampler uses the true zero-SNR schedule itself.
        self.model_state.set_schedule(with_finite_terminal_snr(ANIMATE_ANYONE.alphas_cumprod()), parameterization="v")

        p.extra_generation_params[infotext.KEY] = infotext.encode(args, {
            "frames": self.frames, "fps": self.fps, "context_length": length,
            "reference": f"{self.reference.width}x{self.reference.height}",
        })

    # --- sampling -----------------------------------------------------------------------------------

    def _sampling(self, stack: ExitStack) -> None:
        unet = self.weights.models.denoising_unet
        self.model_state.swap_unet(unet)
        stack.callback(self.model_state.unswap_unet)
        stack.enter_context(inject(unet, self.weights.motion_model, self.window.length, self.layout, scale=self.motion_scale))
        self._compile_motion_modules(stack, self.weights.motion_model)
        stack.enter_context(low_vram.job_unets(self.p.sd_model, swapped_unet=unet, reference_unet=self.reference_net.unet))
        stack.enter_context(animate_anyone_pass(unet, self.reference_net, self.reference_latent, self.image_embeds,
                                                self.layout, self.pose, fast_reference_attention=self._fast_reference(),
                                                sdpa_context=self._sdpa_context()))

    def _fast_reference(self) -> bool:
        """The cached reference K/V path computes plain softmax attention with SDPA: allowed where the
        webui's own attention function is that too (SDP, xformers), without hypernetworks or
        upcasting, which the fast path would skip."""
        from modules import sd_hijack, shared

        method = getattr(sd_hijack.model_hijack, "optimization_method", None) or ""
        return bool(self.settings.fast_reference and method in ("sdp", "sdp-no-mem", "xformers")
                    and not shared.opts.upcast_attn and not shared.loaded_hypernetworks)

    @staticmethod
    def _sdpa_context():
        """The fast path's SDPA kernels as the webui's attention choice allows ("sdp-no-mem": no
        memory-efficient kernel)."""
        from modules import sd_hijack

        if getattr(sd_hijack.model_hijack, "optimization_method", None) == "sdp-no-mem":
            return without_memory_efficient_sdpa
        return nullcontext

    def on_cfg_denoiser(self, params) -> None:
        super().on_cfg_denoiser(params)
        cond = params.text_cond
        embeds = self.image_embeds.to(device=cond.device, dtype=cond.dtype)
        params.text_cond = embeds.expand(cond.shape[0], -1, -1).contiguous()
        params.text_uncond = torch.zeros((params.text_uncond.shape[0],) + tuple(embeds.shape[1:]), device=cond.device, dtype=cond.dtype)

    def _on_unet_call(self, frame_indices, roles, kwargs, x) -> None:
        self.pose.select_frames(frame_indices)
        self.layout.set_roles(roles)

    # --- after the job ------------------------------------------------------------------------------

    def _info_extra(self) -> dict:
        return {
            "mode": "animate_anyone",
            "sampler": self.p.sampler_name,
            "reference_passes": self.reference_net.runs if self.reference_net is not None else 0,
            "fast_reference_attention": self._fast_reference() if self.settings is not None else False,
            "pose_fps": self.pose_clip.fps if self.pose_clip is not None else None,
            **self._compile_info(),
        }

    def _release(self) -> None:
        self.pose = None
        self.reference_latent = None
