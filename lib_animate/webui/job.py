"""One txt2img / img2img job with the extension enabled: the batch becomes the frames of a video.

Lifecycle (webui hook -> what happens here):

* ``before_process``: parse and validate the args; frames = batch size (before the webui builds
  prompts and seeds, so seeds are seed .. seed+F-1 and the next video continues); instance-level
  wrappers on ``p.init`` (raises a deferred request error), ``p.sample`` (injection) and
  ``p.close`` (final restore). Script hooks' exceptions are only logged by the webui, so every
  error is deferred to ``p.init``, which the webui calls directly: the API answers 422.
* ``process``: the model is final now (override_settings reloads happen before): load the
  motion module, check the context, prompt travel, swap the noise schedule.
* ``p.sample``: inject the motion modules and motion LoRAs, install the denoiser hooks, sample,
  and undo all of it in ``finally`` -- on success, exceptions and interrupts alike.
* ``postprocess``: restore the schedule, write the videos, reshape the outputs.
* ``p.close`` (always called, also after exceptions): restore whatever is still applied.

The job object lives on ``p``; nothing about a job is global.
"""

import os
from contextlib import ExitStack
from typing import Any, List, Optional, Sequence, Tuple

import torch

from ..errors import AnimateError
from ..motion import apply_motion_loras, check_compatible, inject, noise_schedule
from ..motion.lora import resolve_pairs
from ..sampling.context import validate_context
from ..sampling.img2vid import blend_init_latents, img2vid_weights
from ..sampling.layout import FrameLayout
from ..sampling.prompt_travel import is_travel_prompt, parse_travel_prompt
from . import infotext, outputs
from .args import AnimateArgs, parse_args
from .compat_animatediff import looks_like_animatediff_payload, translate
from .denoiser import PromptTravel, WindowedInnerModel, WindowSchedule
from .errors import RequestError, as_request_error
from .library import MotionLibrary, WeightsCache
from .model_state import ModelState
from .settings import Settings, read as read_settings

JOB_ATTRIBUTE = "animate_anyone_job"
WRAPPED_METHODS = ("init", "sample", "close")


class Environment:
    """What the script module owns for the life of the webui process: its folder and the weights cache."""

    def __init__(self, extension_dir: str):
        self.extension_dir = extension_dir
        self.cache = WeightsCache()

    def settings(self) -> Settings:
        from modules import shared

        return read_settings(shared.opts.data, self.extension_dir)

    def library(self, settings: Optional[Settings] = None) -> MotionLibrary:
        from modules import paths

        settings = settings or self.settings()
        return MotionLibrary([settings.motion_dir, os.path.join(paths.models_path, "AnimateDiff")])


def of(p) -> Optional["VideoJob"]:
    return getattr(p, JOB_ATTRIBUTE, None)


def begin(p, script_args: Sequence[Any], environment: Environment, is_img2img: bool, ui_to_dict) -> Optional["VideoJob"]:
    """``before_process``: create the job when the extension is enabled (or the args are invalid)."""
    stale = of(p)
    if stale is not None:  # a script runner calling before_process twice on one p
        stale.restore()
    try:
        args = args_from_script_args(script_args, ui_to_dict)
    except AnimateError as e:
        job = VideoJob(p, AnimateArgs(enable=True), environment, is_img2img)
        job.attach()
        job.fail(e)
        return job
    if not args.enable:
        return None
    job = VideoJob(p, args, environment, is_img2img)
    job.attach()
    job.before_process()
    return job


def args_from_script_args(script_args: Sequence[Any], ui_to_dict) -> AnimateArgs:
    """API: one dict in the first slot. UI: the components' values in order."""
    if not script_args:
        return AnimateArgs()
    first = script_args[0]
    if isinstance(first, dict):
        values = translate(first) if looks_like_animatediff_payload(first) else first
        return parse_args(values)
    if isinstance(first, bool):
        return parse_args(ui_to_dict(script_args))
    raise RequestError(
        "Animate Anyone: the script's args must be a list holding one dict of named fields, "
        "e.g. \"alwayson_scripts\": {\"animate anyone\": {\"args\": [{\"enable\": true, \"frames\": 16}]}}"
    )


class VideoJob:
    def __init__(self, p, args: AnimateArgs, environment: Environment, is_img2img: bool):
        self.p = p
        self.args = args
        self.environment = environment
        self.is_img2img = is_img2img
        self.error: Optional[RequestError] = None
        self.layout = FrameLayout(args.frames)
        self.settings: Optional[Settings] = None
        self.motion_model = None
        self.motion_module_name = ""
        self.loras: List[Tuple[Any, float]] = []
        self.window: Optional[WindowSchedule] = None
        self.windowed: Optional[WindowedInnerModel] = None
        self.travel: Optional[PromptTravel] = None
        self.model_state: Optional[ModelState] = None
        self.save_requested = False
        self.sampling = False
        self.init_latent = None
        self.last_latent = None
        self.last_frame_image = None
        self.originals = {}

    # --- wiring ---------------------------------------------------------------------------------

    def attach(self) -> None:
        setattr(self.p, JOB_ATTRIBUTE, self)
        for name in WRAPPED_METHODS:
            self.originals[name] = getattr(self.p, name)
        self.p.init = self._init
        self.p.sample = self._sample
        self.p.close = self._close

    def detach(self) -> None:
        for name in WRAPPED_METHODS:
            if name in vars(self.p):
                delattr(self.p, name)
        if vars(self.p).get(JOB_ATTRIBUTE) is self:
            delattr(self.p, JOB_ATTRIBUTE)

    def fail(self, error: BaseException) -> None:
        self.error = as_request_error(error)
        self.restore()

    def restore(self) -> None:
        """Undo everything that outlives p.sample (idempotent)."""
        if self.model_state is not None:
            self.model_state.restore()
        if self.windowed is not None:
            self.windowed.remove()

    # --- hooks ----------------------------------------------------------------------------------

    def before_process(self) -> None:
        from modules import shared

        try:
            p = self.p
            if self.args.mode != "animatediff":
                raise RequestError(f"mode '{self.args.mode}' is not available yet; use 'animatediff'")
            self._check_prompts()
            self.settings = self.environment.settings()
            self.save_requested = bool(shared.opts.samples_save and not p.do_not_save_samples)
            p.batch_size = self.args.frames
            p.do_not_save_samples = True  # frames go into the video folder, not one PNG each
            p.do_not_save_grid = True
        except Exception as e:
            self.fail(e)

    def process(self) -> None:
        if self.error is not None:
            return
        try:
            self._prepare()
        except Exception as e:
            self.fail(e)

    def postprocess(self, processed) -> None:
        self.restore()
        if self.error is not None:
            return
        try:
            self._write_outputs(processed)
        except Exception as e:
            # The frames are there; a video that could not be written must not lose them.
            processed.comments = (processed.comments or "") + f"\nAnimate Anyone: could not write the video: {e}"
            raise

    def on_cfg_denoiser(self, params) -> None:
        self.windowed.step = int(params.sampling_step)
        self.windowed.install(params.denoiser.inner_model)
        if self.travel is not None:
            params.text_cond = self.travel.conds(params.text_cond)

    # --- wrapped p methods ------------------------------------------------------------------------

    def _init(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        return self.originals["init"](*args, **kwargs)

    def _sample(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        unet = self.p.sd_model.model.diffusion_model
        with ExitStack() as stack:
            stack.callback(self.windowed.remove)
            stack.enter_context(inject(unet, self.motion_model, self.window.length, self.layout))
            if self.loras:
                stack.enter_context(apply_motion_loras(self.motion_model, self.loras))
            if self.is_img2img:
                self._blend_init_latent()
            self.sampling = True
            stack.callback(setattr, self, "sampling", False)
            return self.originals["sample"](*args, **kwargs)

    def _close(self, *args, **kwargs):
        original = self.originals["close"]
        try:
            self.restore()
            self._release_motion_module()
        finally:
            self.detach()
            original(*args, **kwargs)

    # --- preparation ------------------------------------------------------------------------------

    def _check_prompts(self) -> None:
        from modules import prompt_parser

        prompts = self.p.prompt if isinstance(self.p.prompt, list) else [self.p.prompt]
        if any(prompt_parser.re_AND.search(prompt or "") for prompt in prompts):
            raise RequestError(
                "prompts with AND (composable diffusion) cannot be animated: they interleave extra "
                "conditioning rows between the frames. Remove AND from the prompt."
            )

    def _prepare(self) -> None:
        from modules import devices, sd_unet

        p, args = self.p, self.args
        sd_model = p.sd_model
        if not getattr(sd_model, "is_sd1", False):
            kind = "SDXL" if getattr(sd_model, "is_sdxl", False) else "SD2" if getattr(sd_model, "is_sd2", False) else "non-SD1"
            raise RequestError(f"AnimateDiff motion modules need an SD1.x checkpoint; the loaded checkpoint is {kind}")
        if getattr(sd_unet, "current_unet", None) is not None:
            raise RequestError("an SD UNet replacement (e.g. TensorRT) is active; it would bypass the motion modules. Set 'SD Unet' to None.")
        if self.is_img2img and len(getattr(p, "init_images", None) or []) != 1:
            raise RequestError(f"img2vid needs exactly one init image (got {len(p.init_images or [])}); it becomes the first frame")

        library = self.environment.library(self.settings)
        self.motion_module_name, path = library.module_path(args.motion_module)
        unet = sd_model.model.diffusion_model
        device = next(unet.parameters()).device
        self.motion_model = self.environment.cache.motion_module(path, device, devices.dtype_unet)
        check_compatible(unet, self.motion_model)

        length = args.context_length or self.motion_model.max_frames
        if length > self.motion_model.max_frames:
            raise RequestError(
                f"context_length {length} exceeds the window of '{self.motion_model.name}' "
                f"({self.motion_model.max_frames} frames)"
            )
        length = min(length, args.frames)
        if args.frames > length:
            try:
                validate_context(length, args.context_overlap, args.context_stride)
            except ValueError as e:
                raise RequestError(f"context windows: {e}") from e
        self.window = WindowSchedule(args.frames, length, args.context_overlap, args.closed_loop, args.context_stride, args.fusion)
        self.layout.set_frames(length)
        self.windowed = WindowedInnerModel(self.window, self.layout)

        for lora_arg in args.motion_loras:
            lora = self.environment.cache.motion_lora(library.lora_path(lora_arg.name))
            resolve_pairs(self.motion_model, lora)  # incompatible -> error now, not mid-job
            self.loras.append((lora, lora_arg.strength))

        self._prepare_prompt_travel()
        if self.is_img2img:
            self._prepare_last_frame()

        self.model_state = ModelState(sd_model)
        if args.noise_schedule == "motion_module":
            self.model_state.set_schedule(noise_schedule(self.motion_model).alphas_cumprod())

        p.extra_generation_params[infotext.KEY] = infotext.encode(
            args, {"motion_module": self.motion_module_name, "motion_module_version": self.motion_model.version, "context_length": length}
        )

    def _prepare_prompt_travel(self) -> None:
        p, frames = self.p, self.args.frames
        if not p.all_prompts or not is_travel_prompt(p.all_prompts[0]):
            return
        travel = parse_travel_prompt(p.all_prompts[0], frames)
        self.travel = PromptTravel(travel.indices, frames, self.args.closed_loop, self.args.prompt_interpolation)
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
        if isinstance(image, str):
            from modules.api.api import decode_base64_to_image

            try:
                image = decode_base64_to_image(image)
            except Exception as e:
                raise RequestError(f"'last_frame' is not a readable image: {getattr(e, 'detail', e)}") from e
        self.last_frame_image = image

    def _blend_init_latent(self) -> None:
        """First frame pinned to the init image (and the last to last_frame), fading into noise."""
        p, args = self.p, self.args
        if self.init_latent is None:
            self.init_latent = p.init_latent  # the webui's latent of the init image, one row per frame
        first = self.init_latent[:1]
        if self.last_frame_image is not None and self.last_latent is None:
            self.last_latent = self._encode_last_frame(first)
        a, b = img2vid_weights(
            args.frames, args.latent_power, args.latent_scale, last_image=self.last_latent is not None,
            power_last=args.latent_power, scale_last=args.latent_scale, strength=args.init_strength,
        )
        generator = torch.Generator().manual_seed(int(p.seeds[0]))
        noise = torch.randn((args.frames,) + tuple(first.shape[1:]), generator=generator).to(first.device, first.dtype)
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

    def _release_motion_module(self) -> None:
        from modules import shared

        low_vram = getattr(shared.cmd_opts, "lowvram", False) or getattr(shared.cmd_opts, "medvram", False)
        if self.settings is not None and (low_vram or not self.settings.keep_in_vram):
            self.environment.cache.offload()

    # --- outputs ------------------------------------------------------------------------------------

    def _write_outputs(self, processed) -> None:
        from modules import images, shared
        from modules.processing import create_infotext

        p, args = self.p, self.args
        frames = args.frames
        first = processed.index_of_first_image
        all_frames = list(processed.images[first:])
        result = outputs.VideoOutputs(videos=len(all_frames) // frames)
        result.interrupted = bool(shared.state.interrupted or shared.state.skipped)
        outputs.wrap_js(processed, lambda: result.api_entry(frames, args.fps))
        if result.interrupted and not shared.opts.save_incomplete_images:
            result.videos = 0
            result.message = "interrupted, no video was written"
        if result.videos == 0:
            result.message = result.message or "no complete video"
            processed.comments = (processed.comments or "") + f"\nAnimate Anyone: {result.message}."
            return

        save = self.save_requested
        video_infotexts = []
        for v in range(result.videos):
            clip = all_frames[v * frames:(v + 1) * frames]
            index = v * frames
            text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=index, iteration=v, all_negative_prompts=p.all_negative_prompts)
            if self.travel is not None and text.startswith(p.all_prompts[index]):
                text = p.main_prompt + text[len(p.all_prompts[index]):]
            video_infotexts.append(text)
            options = outputs.encode_options(self.settings, args.fps, args.loop, text if shared.opts.enable_pnginfo else None)
            folder = self._video_folder(p.all_seeds[index], p.all_prompts[index], clip[0]) if save else None
            basename = None
            if folder is not None:
                os.makedirs(folder, exist_ok=True)
                basename = f"{images.get_next_sequence_number(folder, ''):05}-{p.all_seeds[index]}"
            video_items = outputs.write_video(v, clip, args.formats, options, folder, basename, want_bytes=p.is_api,
                                              write_txt=bool(getattr(shared.opts, "save_txt", False)))
            result.items.extend(video_items)
            if not p.is_api:
                result.previews.append(outputs.preview_file(clip, options, video_items))

        count = result.videos * frames
        frame_infotexts = list(processed.infotexts[first:first + count])
        if p.is_api:
            trailing = [i for i in result.items if i.format != "PNG"]
            processed.images = all_frames[:count] + [outputs.base64_item(i) for i in trailing]
            processed.infotexts = frame_infotexts + [video_infotexts[i.video] for i in trailing]
            result.first_item_index = count
        else:
            processed.images = result.previews + all_frames[:count]
            processed.infotexts = video_infotexts + frame_infotexts
        processed.index_of_first_image = 0

    def _video_folder(self, seed, prompt, image) -> str:
        from modules import images, shared

        p = self.p
        base = self.settings.video_dir
        if not base:
            kind = "img2img-videos" if self.is_img2img else "txt2img-videos"
            base = os.path.join(os.path.dirname(os.path.normpath(p.outpath_samples)), kind)
        if shared.opts.save_to_dirs:
            namegen = images.FilenameGenerator(p, seed, prompt, image)
            sub = namegen.apply(shared.opts.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
            base = os.path.join(base, sub)
        return base


def on_cfg_denoiser(params) -> None:
    """Global ``on_cfg_denoiser`` callback: acts only for denoisers of a running job."""
    job = of(getattr(params.denoiser, "p", None))
    if job is not None and job.sampling and job.error is None:
        job.on_cfg_denoiser(params)
