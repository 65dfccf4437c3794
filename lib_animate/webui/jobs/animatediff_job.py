"""AnimateDiff mode: the user's checkpoint, LoRAs and embeddings, plus a motion module.

The motion modules go into the webui's own UNet only while p.sample runs; the noise schedule
the module was trained with replaces the checkpoint's for the job (unless the request keeps the
checkpoint's); prompt travel interpolates per-frame conditioning; img2img pins the first (and
optionally the last) frame to an image.
"""

from contextlib import ExitStack
from typing import Any, List, Optional, Tuple

import torch

from ...errors import IncompatibleModelError
from ...motion import apply_motion_loras, check_compatible, inject, noise_schedule
from ...motion.lora import resolve_pairs
from ...sampling.encode_chunks import chunked_encode
from ...sampling.img2vid import blend_init_latents, img2vid_weights
from ...sampling.prompt_travel import PromptTravel, is_travel_prompt, parse_travel_prompt
from ..api import infotext
from . import low_vram, model_kind, video_inputs
from .character import Character
from .aa_inputs import PixelBudget, decode_image
from ..controlnet.controlnet_bridge import ControlBridge
from ..errors import RequestError
from .job import VideoJob
from .model_state import ModelState


class AnimateDiffJob(VideoJob):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.motion_model = None
        self.motion_module_name = ""
        self.loras: List[Tuple[Any, float]] = []
        self.travel: Optional[PromptTravel] = None
        self.init_latent = None
        self.last_latent = None
        self.last_frame_image = None
        self.inputs: Optional[video_inputs.VideoInputs] = None
        self.bridge: Optional[ControlBridge] = None
        self.control_clips: List[Tuple[str, list]] = []  # control_maps: each per-frame unit's hints as a video
        self.character: Optional[Character] = None  # the character option (reference image + poses)
        self.model_family: Optional[str] = None  # model_kind.SD1 or model_kind.SDXL

    @property
    def vid2vid(self) -> bool:
        return self.inputs is not None and self.inputs.init_images is not None

    # --- preparation --------------------------------------------------------------------------------

    def _validate(self) -> None:
        """Per-frame inputs (control video, init video, ControlNet units) and the frame count."""
        from modules import shared
        from modules.api.api import decode_base64_to_image

        pose_frames = None
        if self.args.character:
            from .animate_anyone_job import pose_limits

            if self.is_img2img:
                raise RequestError("the character option runs in txt2img (the reference image is its own field); use the "
                                   "txt2img tab or /sdapi/v1/txt2img")
            self.character = Character(self.p, self.args, self.settings, self.layout)
            pose_frames = self.character.load_inputs(pose_limits(self.settings), decode_base64_to_image)
        self.inputs = video_inputs.prepare(
            self.p, self.args, self.settings.max_pose_frames, server_paths=not getattr(shared.cmd_opts, "hide_ui_dir_config", False),
            is_img2img=self.is_img2img, decode_base64=decode_base64_to_image, pose_frames=pose_frames,
        )
        if self.character is not None:
            Character.check_plan(self.inputs.plan)
        if self.args.compat is not None:  # an sd-webui-animatediff payload: its frame-count rules
            self.args = self.args.compat.resolve(self.args, self.args.frames)

    def _prepare(self) -> None:
        from modules import devices

        p, args = self.p, self.args
        self.model_family = model_kind.check_for_animatediff(p.sd_model)
        if self.character is not None:
            model_kind.check_sd1_only(p.sd_model, "The character option")
        self._check_no_unet_replacement()
        if self.is_img2img and not self.vid2vid and len(getattr(p, "init_images", None) or []) != 1:
            raise RequestError(f"img2vid needs exactly one init image (got {len(p.init_images or [])}); it becomes the first frame")

        library = self.environment.library(self.settings)
        self.motion_module_name, path = library.module_path(args.motion_module, self.model_family)
        unet = p.sd_model.model.diffusion_model
        self._hold_cache()
        # the CPU in the low-VRAM modes: the motion modules move with the UNet's blocks (low_vram.py)
        self.motion_model = self.environment.cache.motion_module(path, low_vram.weights_device(p.sd_model), devices.dtype_unet)
        try:
            check_compatible(unet, self.motion_model)
        except IncompatibleModelError as e:
            raise RequestError(f"{e} (loaded checkpoint: '{model_kind.checkpoint_name(p.sd_model)}', "
                               f"{model_kind.describe(p.sd_model)})") from e
        length = self._context_windows(args.context_length or self.motion_model.max_frames,
                                       self.motion_model.max_frames, self.motion_model.name)
        self._prepare_motion()

        for lora_arg in args.motion_loras:
            lora = self.environment.cache.motion_lora(library.lora_path(lora_arg.name))
            resolve_pairs(self.motion_model, lora)  # incompatible -> error now, not mid-job
            self.loras.append((lora, lora_arg.strength))

        self._prepare_prompt_travel()
        if self.is_img2img:
            self._check_init_images()
            self._prepare_last_frame()

        self.model_state = ModelState(p.sd_model)
        if args.noise_schedule == "motion_module":
            self.model_state.set_schedule(noise_schedule(self.motion_model).alphas_cumprod())

        if self.character is not None:
            self.character.prepare()
        p.extra_generation_params[infotext.KEY] = infotext.encode(
            args, {"motion_module": self.motion_module_name, "motion_module_version": self.motion_model.version, "context_length": length}
        )

    def _prepare_prompt_travel(self) -> None:
        p, frames = self.p, self.frames
        if not p.all_prompts or not is_travel_prompt(p.all_prompts[0]):
            return
        travel = parse_travel_prompt(p.all_prompts[0], frames)
        args = self.args
        loop = args.closed_loop if args.prompt_travel_loop is None else args.prompt_travel_loop
        pooled_width = None
        if self.model_family == model_kind.SDXL:
            pooled_width = model_kind.sdxl_pooled_width(p.sd_model)
        self.travel = PromptTravel(travel.indices, frames, loop, args.prompt_interpolation, pooled_width)
        keyframe_prompts = travel.prompts()
        per_frame = [keyframe_prompts[a] for a in self.travel.frame_keyframes()]
        p.all_prompts = per_frame * p.n_iter
        hr_prompts = getattr(p, "all_hr_prompts", None)
        if hr_prompts and is_travel_prompt(hr_prompts[0]):
            hr_travel = parse_travel_prompt(hr_prompts[0], frames)
            if hr_travel.indices != travel.indices:
                raise RequestError("the hires prompt travels over other keyframes than the prompt; use the same keyframe numbers")
            hr_keyframes = hr_travel.prompts()
            p.all_hr_prompts = [hr_keyframes[a] for a in self.travel.frame_keyframes()] * p.n_iter

    def _prepare_last_frame(self) -> None:
        image = self.args.last_frame
        if image is None or image == "":
            return
        from modules.api.api import decode_base64_to_image

        self.last_frame_image = decode_image(image, "last_frame", decode_base64_to_image)  # size checked first

    def _check_init_images(self) -> None:
        """The webui decoded them already; still, one image cannot be larger than any other input."""
        for i, image in enumerate(getattr(self.p, "init_images", None) or []):
            if hasattr(image, "size"):
                PixelBudget(f"init image {i}").add(*image.size)

    # --- sampling -----------------------------------------------------------------------------------

    def _sampling(self, stack: ExitStack) -> None:
        unet = self.p.sd_model.model.diffusion_model
        injection = stack.enter_context(inject(unet, self.motion_model, self.window.length, self.layout, scale=self.motion_scale))
        self._compile_motion_modules(stack, self.motion_model)
        stack.enter_context(low_vram.job_unets(self.p.sd_model))
        if self.loras:
            stack.enter_context(apply_motion_loras(self.motion_model, self.loras))
        self._capture_controlnet(stack, unet)
        if self.character is not None:
            self.character.sampling(stack, unet, injection)
        if self.is_img2img and not self.vid2vid:
            self._blend_init_latent()

    def _capture_controlnet(self, stack: ExitStack, unet) -> None:
        """sd-webui-controlnet's process() has run: take over its per-frame hints for our UNet calls."""
        plan = self.inputs.plan if self.inputs is not None else None
        if plan is None:
            return
        self.bridge = ControlBridge.capture(plan.script, unet, self.frames, self.inputs.expected_units,
                                           keep_on_cpu=low_vram.mode(self.p.sd_model) is not None)
        stack.callback(setattr, self, "bridge", None)
        stack.callback(self.bridge.restore)
        if self.args.control_maps and not self.control_clips:
            numbers = {id(u.unit): u.number for u in plan.units}
            self.control_clips = [(f"control{numbers.get(id(unit), '')}", list(frames)) for unit, frames in self.bridge.hint_frames()]

    def _extra_clips(self) -> list:
        return list(self.control_clips) + self._freeinit_clips()

    def _freeinit_clips(self) -> list:
        """freeinit_all_passes: the first video's earlier FreeInit passes, decoded, as "freeinit1", ..."""
        from modules import devices
        from modules.processing import decode_latent_batch

        clips = []
        for number, latents in enumerate(self.freeinit_kept, start=1):
            decoded = decode_latent_batch(self.p.sd_model, latents.to(devices.device), target_device=devices.cpu)
            # as the webui turns its own samples into images (truncating, not rounding)
            pixels = 255.0 * torch.clamp((torch.stack(decoded).float() + 1.0) / 2.0, 0.0, 1.0)
            clips.append((f"freeinit{number}", list(pixels.permute(0, 2, 3, 1).numpy().astype("uint8"))))
        return clips

    def _on_unet_call(self, frame_indices, roles, kwargs, x) -> None:
        self.layout.set_roles(roles)
        if self.character is not None:
            self.character.before_unet_call(x)
        if self.bridge is not None:
            self.bridge.on_unet_call(frame_indices, len(roles), x)

    def _init_context(self):
        # One VAE call over every init frame would need memory for all of them at full resolution.
        return chunked_encode(self.p.sd_model) if self.vid2vid else super()._init_context()

    def on_cfg_denoiser(self, params) -> None:
        super().on_cfg_denoiser(params)
        if self.travel is not None:
            params.text_cond = self.travel.conds(params.text_cond)
        if self.character is not None:
            self.character.on_cfg_denoiser(params)

    def _blend_init_latent(self) -> None:
        """First frame pinned to the init image (and the last to last_frame), fading into noise."""
        p, args = self.p, self.args
        if self.init_latent is None:
            self.init_latent = p.init_latent  # the webui's latent of the init image, one row per frame
        first = self.init_latent[:1]
        if self.last_frame_image is not None and self.last_latent is None:
            self.last_latent = self._encode_last_frame(first)
        a, b = img2vid_weights(
            self.frames, args.latent_power, args.latent_scale, last_image=self.last_latent is not None,
            power_last=args.latent_power_last, scale_last=args.latent_scale_last, strength=args.init_strength,
        )
        generator = torch.Generator().manual_seed(int(p.seeds[0]))
        noise = torch.randn((self.frames,) + tuple(first.shape[1:]), generator=generator).to(first.device, first.dtype)
        last = self.last_latent.to(first.device, first.dtype) if self.last_latent is not None else None
        blended = blend_init_latents(noise, first, a, last, b)
        # Keep the webui's memory layout (its VAE may hand over channels-last latents): the layout
        # changes which convolution kernels run, and with them the last bits of every frame.
        p.init_latent = torch.empty_like(self.init_latent).copy_(blended)

    def _encode_last_frame(self, like: torch.Tensor) -> torch.Tensor:
        import numpy as np
        from modules import devices, images, shared
        from modules.processing import images_tensor_to_samples
        from modules.sd_samplers_common import approximation_indexes

        p = self.p
        image = images.flatten(self.last_frame_image, shared.opts.img2img_background_color)
        image = images.resize_image(p.resize_mode, image, p.width, p.height)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        pixels = pixels.to(shared.device, dtype=devices.dtype_vae)
        latent = images_tensor_to_samples(pixels, approximation_indexes.get(shared.opts.sd_vae_encode_method), p.sd_model)
        if latent.shape[-2:] != like.shape[-2:]:
            latent = torch.nn.functional.interpolate(latent, size=like.shape[-2:], mode="bilinear")
        return latent

    # --- after the job ------------------------------------------------------------------------------

    def _release(self) -> None:
        self.bridge = None
        if self.inputs is not None:
            self.inputs.cleanup()

    def _info_extra(self) -> dict:
        extra = super()._info_extra()
        plan = self.inputs.plan if self.inputs is not None else None
        if plan is not None:
            extra["controlnet_units"] = [{"unit": u.number, "per_frame": u.per_frame is not None,
                                          "source": u.per_frame.kind if u.per_frame is not None else None}
                                         for u in plan.units]
        if self.vid2vid:
            extra["init_video_frames"] = len(self.inputs.init_images)
        if self.character is not None:
            extra.update(self.character.info())
        return extra

    def _video_infotext(self, index: int, iteration: int) -> str:
        text = super()._video_infotext(index, iteration)
        p = self.p
        if self.travel is not None and text.startswith(p.all_prompts[index]):
            text = p.main_prompt + text[len(p.all_prompts[index]):]  # the video records the travel prompt
        return text
