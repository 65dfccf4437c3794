"""One txt2img / img2img job with the extension enabled: the batch becomes the frames of a video.

Lifecycle (webui hook -> what happens here):

* ``before_process``: parse and validate the args; frames = batch size (before the webui builds
  prompts and seeds, so seeds are seed .. seed+F-1 and the next video continues); instance-level
  wrappers on ``p.init`` (raises a deferred request error), ``p.sample`` (hooks) and ``p.close``
  (final restore). Script hooks' exceptions are only logged by the webui, so every error is
  deferred to ``p.init``, which the webui calls directly: the API answers 422.
* ``process``: the model is final now (override_settings reloads happen before): mode-specific
  preparation (weights, context windows, schedule, ...).
* ``p.sample``: enter the mode's hooks, sample, and undo all of them in ``finally`` -- on success,
  exceptions and interrupts alike.
* ``postprocess``: restore the model, write the videos, reshape the outputs, release what the job
  holds (also when it fails: the X/Y/Z plot never calls ``close`` on its copies of p).
* ``p.close`` (called by the webui's own txt2img / img2img, also after exceptions): restore and
  release whatever is still held.

The job object lives on ``p``; nothing about a job is global. The modes are subclasses:
:class:`~lib_animate.webui.jobs.animatediff_job.AnimateDiffJob` and
:class:`~lib_animate.webui.jobs.animate_anyone_job.AnimateAnyoneJob`.
"""

import os
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from typing import Any, Optional, Sequence

from ...errors import AnimateError
from ...sampling.context import validate_context
from ...sampling.layout import FrameLayout
from ..api.args import XYZ_OVERRIDES, AnimateArgs, parse_args, with_overrides
from ..api.compat_animatediff import looks_like_animatediff_payload, translate
from ..controlnet import controlnet_units
from ..errors import RequestError, as_request_error
from ..settings import Settings, read as read_settings
from . import outputs
from .denoiser import WindowedInnerModel, WindowSchedule, rows_of
from .initial_noise import FreeInitPasses, freenoise_transform, on_first_draw
from .library import ModuleFamilies, MotionLibrary, WeightsCache
from .model_state import ModelState

JOB_ATTRIBUTE = "animate_anyone_job"
WRAPPED_METHODS = ("init", "sample", "close")
CONTROLNET_SAVED_SAMPLE = "sample_before_CN_hack"  # where sd-webui-controlnet keeps the p.sample it wraps


class Environment:
    """What the script module owns for the life of the webui process: its folder and the weights cache."""

    def __init__(self, extension_dir: str):
        self.extension_dir = extension_dir
        self.cache = WeightsCache()
        self.module_families = ModuleFamilies()  # which checkpoint family each motion-module file is for

    def settings(self) -> Settings:
        from modules import paths, shared

        return read_settings(shared.opts.data, self.extension_dir, paths.models_path)

    def library(self, settings: Optional[Settings] = None) -> MotionLibrary:
        from modules import paths

        settings = settings or self.settings()
        return MotionLibrary([settings.motion_dir, os.path.join(paths.models_path, "AnimateDiff")], self.module_families)


def of(p) -> Optional["VideoJob"]:
    return getattr(p, JOB_ATTRIBUTE, None)


def begin(p, script_args: Sequence[Any], environment: Environment, is_img2img: bool, ui_to_dict) -> Optional["VideoJob"]:
    """``before_process``: create the job when the extension is enabled (or the args are invalid)."""
    stale = of(p)
    if stale is not None:  # process_images called twice on one p (e.g. by another script)
        stale.restore()
        stale.detach()
    try:
        args = args_from_script_args(script_args, ui_to_dict)
        overrides = getattr(p, XYZ_OVERRIDES, None)
        if overrides:  # a cell of the X/Y/Z plot with axes of ours
            args = with_overrides(args, overrides)
        if not (args.enable and args.mode == "animate_anyone"):
            _refuse_animate_anyone_sampler(p)
    except AnimateError as e:
        return _failed_job(p, e, environment, is_img2img)
    if not args.enable:
        return None
    job = job_class(args.mode)(p, args, environment, is_img2img)
    job.attach()
    job.before_process()
    return job


def _failed_job(p, error: BaseException, environment: Environment, is_img2img: bool) -> "VideoJob":
    """A job that only carries the error: p.init raises it (the API answers 422), nothing else runs."""
    job = VideoJob(p, AnimateArgs(enable=True), environment, is_img2img)
    job.attach()
    job.fail(error)
    return job


def _refuse_animate_anyone_sampler(p) -> None:
    """The "Animate Anyone (DDIM)" sampler is in every sampler list, but it samples the Animate Anyone
    model (v-prediction, zero terminal SNR); any other job would read its model's output wrongly.
    ``before_process`` runs for every job, so this holds whether or not the extension is enabled."""
    from modules import sd_samplers

    from .aa_sampler import NAME

    for attribute, what in (("sampler_name", "sampler"), ("hr_sampler_name", "hires sampler")):
        name = getattr(p, attribute, None)
        if isinstance(name, str) and sd_samplers.samplers_map.get(name.lower()) == NAME:
            raise RequestError(f"the {what} '{name}' only samples Animate Anyone jobs (the Animate Anyone mode of this "
                               f"extension); choose another sampler")


def job_class(mode: str):
    if mode == "animate_anyone":
        from .animate_anyone_job import AnimateAnyoneJob

        return AnimateAnyoneJob
    from .animatediff_job import AnimateDiffJob

    return AnimateDiffJob


def args_from_script_args(script_args: Sequence[Any], ui_to_dict) -> AnimateArgs:
    """API: one dict in the first slot. UI: the components' values in order."""
    if not script_args:
        return AnimateArgs()
    first = script_args[0]
    if isinstance(first, dict):
        if looks_like_animatediff_payload(first):
            values, compat = translate(first)
            return replace(parse_args(values), compat=compat)
        return parse_args(first)
    if isinstance(first, bool):
        return parse_args(ui_to_dict(script_args))
    raise RequestError(
        "Animate Anyone: the script's args must be a list holding one dict of named fields, "
        "e.g. \"alwayson_scripts\": {\"animate anyone\": {\"args\": [{\"enable\": true, \"frames\": 16}]}}"
    )


class VideoJob:
    """What every video job shares: wiring on p, deferred errors, restore, outputs.

    Modes override ``frames`` / ``fps``, ``_validate`` (before_process), ``_prepare`` (process),
    ``_sampling`` (hooks around p.sample), ``on_cfg_denoiser`` and ``_on_unet_call``.
    """

    def __init__(self, p, args: AnimateArgs, environment: Environment, is_img2img: bool):
        self.p = p
        self.args = args
        self.environment = environment
        self.is_img2img = is_img2img
        self.error: Optional[RequestError] = None
        self.layout = FrameLayout(max(args.frames, 1))
        self.settings: Optional[Settings] = None
        self.window: Optional[WindowSchedule] = None
        self.windowed: Optional[WindowedInnerModel] = None
        self.model_state: Optional[ModelState] = None
        self.save_requested = False
        self.sampling = False
        self.compile_status = None  # motion.compile.CompileStatus of the last sampling pass, with the setting on
        self.originals = {}
        self.holds_cache = False
        self.released = False
        self.motion_scale = None  # motion.MotionScale, set by _prepare_motion
        self.freeinit: Optional[FreeInitPasses] = None
        self.freeinit_kept: list = []  # latents of the first video's earlier FreeInit passes (freeinit_all_passes)

    @property
    def frames(self) -> int:
        return self.args.frames

    @property
    def fps(self) -> float:
        return self.args.fps

    # --- wiring ---------------------------------------------------------------------------------

    def attach(self) -> None:
        # A p that sd-webui-controlnet hooked before still has its wrapper as p.sample and the
        # sample it wrapped saved aside; ControlNet would keep that saved one and bypass ours.
        saved = vars(self.p).pop(CONTROLNET_SAVED_SAMPLE, None)
        if saved is not None:
            self.p.sample = saved
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
        # sd-webui-controlnet saves the p.sample it wraps once per p and reuses it when the same p
        # is processed again: drop ours, or a later run would call this finished job.
        if vars(self.p).get(CONTROLNET_SAVED_SAMPLE) == self._sample:
            delattr(self.p, CONTROLNET_SAVED_SAMPLE)
        if vars(self.p).get(JOB_ATTRIBUTE) is self:
            delattr(self.p, JOB_ATTRIBUTE)

    def fail(self, error: BaseException) -> None:
        self.error = as_request_error(error)
        controlnet_units.stand_down(self.p)
        self.restore()
        self.release()

    def release(self) -> None:
        """Give back what the job holds (cached weights, temporary files, memory); idempotent. Runs
        at the end of postprocess and when the job fails -- never only in p.close, which the X/Y/Z
        plot does not call for its copies of p."""
        if self.released:
            return
        self.released = True
        try:
            self._release()
        finally:
            if self.holds_cache:
                self.holds_cache = False
                self.environment.cache.let_go()
            if self._offload_cached_weights_if_needed():
                self.environment.cache.offload()

    def _hold_cache(self) -> None:
        """Before the job takes weights from the cache: nothing offloads them until it is released."""
        if not self.holds_cache:
            self.environment.cache.hold()
            self.holds_cache = True

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
            self._check_prompts()
            self._check_no_model_swap()
            self.settings = self.environment.settings()
            self._validate()
            self.save_requested = bool(shared.opts.samples_save and not p.do_not_save_samples)
            p.batch_size = self.frames
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
        try:
            if self.error is None:
                self._write_outputs(processed)
        except Exception as e:
            # The frames are there; a video that could not be written must not lose them.
            processed.comments = (processed.comments or "") + f"\nAnimate Anyone: could not write the video: {e}"
            raise
        finally:
            self.release()

    def on_cfg_denoiser(self, params) -> None:
        self.windowed.begin_forward(params.sampling_step, rows_of(params.text_cond))
        self.windowed.install(params.denoiser.inner_model)

    # --- mode hooks -----------------------------------------------------------------------------

    def _validate(self) -> None:
        """Checks and set-up that must happen before the webui builds prompts and seeds."""

    def _prepare(self) -> None:
        """Set-up once the model for this job is final."""

    def _sampling(self, stack: ExitStack) -> None:
        """Enter everything p.sample runs under into ``stack`` (undone when sampling ends)."""

    def _on_unet_call(self, frame_indices, roles, kwargs, x) -> None:
        """Before every UNet call of the denoiser: the call's frames (None = all), the roles of its clip
        chunks (cond / uncond, from the webui's call order), kwargs and x."""

    def _init_context(self):
        """What the webui's p.init runs under (e.g. chunked VAE encoding of init frames)."""
        return nullcontext()

    def _release(self) -> None:
        """After the job (see ``release``): the mode's own memory and files."""

    def _info_extra(self) -> dict:
        """Mode-specific entries of the API's ``info.animate_anyone``."""
        freeinit = {"freeinit_passes": self.freeinit.passes_run} if self.freeinit is not None else {}
        return {"mode": self.args.mode, **self._compile_info(), **freeinit}

    # --- wrapped p methods ------------------------------------------------------------------------

    def _init(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        with self._init_context():
            return self.originals["init"](*args, **kwargs)

    def _sample(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        with ExitStack() as stack:
            stack.callback(self.windowed.remove)
            try:
                if self.model_state is not None:  # the schedule, undone with everything else below
                    stack.enter_context(self.model_state.applied(self.p, rebuild_sampler=self.is_img2img))
                self._sampling(stack)
            except AnimateError as e:  # e.g. weights that turn out not to fit: a request error, not a crash
                raise as_request_error(e) from e
            self.sampling = True
            stack.callback(setattr, self, "sampling", False)
            try:
                return self._run_passes(*args, **kwargs)
            except BaseException:
                self.release()  # postprocess will not run (and p.close may not either)
                raise

    def _close(self, *args, **kwargs):
        original = self.originals["close"]
        try:
            self.restore()
            self.release()
        finally:
            self.detach()
            original(*args, **kwargs)

    # --- shared preparation -------------------------------------------------------------------------

    def _check_prompts(self) -> None:
        """AND makes the webui interleave extra cond rows between the frames; refuse it in every mode."""
        from modules import prompt_parser

        prompts = self.p.prompt if isinstance(self.p.prompt, list) else [self.p.prompt]
        if any(prompt_parser.re_AND.search(prompt or "") for prompt in prompts):
            raise RequestError(
                "prompts with AND (composable diffusion) cannot be animated: they interleave extra "
                "conditioning rows between the frames. Remove AND from the prompt."
            )

    def _check_no_model_swap(self) -> None:
        """A refiner, or a hires pass on another checkpoint, swaps the model in the middle of the job:
        no motion module fits the other model and the job's hooks would stay on the first."""
        p = self.p
        if getattr(p, "refiner_checkpoint", None) not in (None, "", "None", "none"):
            raise RequestError(f"a refiner ('{p.refiner_checkpoint}') swaps the model in the middle of sampling, which a video "
                               f"job cannot follow; turn the refiner off")
        hires = getattr(p, "hr_checkpoint_name", None)
        if getattr(p, "enable_hr", False) and hires not in (None, "", "Use same checkpoint"):
            raise RequestError(f"the hires pass on another checkpoint ('{hires}') swaps the model in the middle of the job, "
                               f"which a video job cannot follow; use 'Use same checkpoint'")

    def _check_no_unet_replacement(self) -> None:
        from modules import sd_unet

        if getattr(sd_unet, "current_unet", None) is not None:
            raise RequestError("an SD UNet replacement (e.g. TensorRT) is active; it would bypass the motion modules. Set 'SD Unet' to None.")

    def _context_windows(self, length: int, max_frames: int, name: str) -> int:
        """Set up the window schedule and the denoiser hook; returns the window length."""
        args = self.args
        if length > max_frames:
            raise RequestError(f"context_length {length} exceeds the window of '{name}' ({max_frames} frames)")
        length = min(length, self.frames)
        if self.frames > length:
            try:
                validate_context(length, args.context_overlap, args.context_stride)
            except ValueError as e:
                raise RequestError(f"context windows: {e}") from e
        self.window = WindowSchedule.named(args.context_schedule, self.frames, length, args.context_overlap, args.context_stride, args.fusion)
        self.layout.set_frames(length)
        self.windowed = WindowedInnerModel(self.window, self.layout, on_call=self._on_unet_call)
        return length

    def _prepare_motion(self) -> None:
        """Motion scale, FreeNoise and FreeInit, once the frame count and the window are known."""
        from ...motion import parse_motion_scale

        self.motion_scale = parse_motion_scale(self.args.motion_scale, self.frames)
        window = self.args.freenoise_window or self.window.length
        if self.args.freeinit_iterations and self.args.mode == "animate_anyone":
            raise RequestError("FreeInit works in the AnimateDiff mode: Animate Anyone's zero-terminal-SNR schedule noises "
                               "a result back to pure noise at its first step, so nothing of it would carry over")
        if self.args.freeinit_iterations and self.is_img2img:
            raise RequestError("FreeInit re-noises each pass's result back to pure noise, which would discard the init image "
                               "and the denoising strength; use it in txt2img ('freeinit_iterations': 0 in img2img)")
        if self.args.noise_init == "freenoise" and self.args.freenoise_stride > window:
            raise RequestError(f"'freenoise_stride' ({self.args.freenoise_stride}) cannot exceed the FreeNoise window "
                               f"({window} frames: 'freenoise_window', or the context length when 0)")

    def _run_passes(self, *args, **kwargs):
        """The webui's p.sample, with this job's initial noise (FreeNoise) and FreeInit's passes."""
        original = self.originals["sample"]
        p = self.p
        if getattr(p, "rng", None) is None or (self.args.noise_init != "freenoise" and not self.args.freeinit_iterations):
            return original(*args, **kwargs)
        window = self.args.freenoise_window or self.window.length
        freenoise = freenoise_transform(self.args, window, int(p.seeds[0]))
        if self.args.freeinit_iterations:
            first_video = self.freeinit is None  # earlier passes are kept for the first video only
            self.freeinit = FreeInitPasses(p, self.args, self.frames, freenoise,
                                           keep_passes=self.args.freeinit_all_passes and first_video)
            if first_video:
                self.freeinit_kept = self.freeinit.kept
            return self.freeinit.run(original, *args, **kwargs)
        undo = on_first_draw(p, freenoise)
        try:
            return original(*args, **kwargs)
        finally:
            undo()

    def _compile_motion_modules(self, stack: ExitStack, motion_model) -> None:
        """The optional torch.compile path (Settings); falls back to eager with a warning."""
        if self.settings is not None and self.settings.compile:
            from ...motion.compile import compiled_motion_modules

            self.compile_status = stack.enter_context(compiled_motion_modules(motion_model))

    def _compile_info(self) -> dict:
        """With the compile setting on: whether the motion modules ran compiled, or why they fell back."""
        status = self.compile_status
        return {} if status is None else {"compiled": status.active, "compile_fallback": status.fallback}

    def _offload_cached_weights_if_needed(self) -> bool:
        from . import low_vram

        return self.settings is not None and (low_vram.mode(self.p.sd_model) is not None or not self.settings.keep_in_vram)

    # --- outputs ------------------------------------------------------------------------------------

    def _video_infotext(self, index: int, iteration: int) -> str:
        from modules.processing import create_infotext

        p = self.p
        return create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=index, iteration=iteration,
                               all_negative_prompts=p.all_negative_prompts)

    def _extra_clips(self) -> list:
        """Further videos of the job, after its own: ``[(name, frames)]`` (e.g. the control video)."""
        return []

    def _write_outputs(self, processed) -> None:
        outputs.write_job_outputs(processed, outputs.FinishedJob(
            p=self.p, args=self.args, settings=self.settings, frames=self.frames, fps=self.fps,
            is_img2img=self.is_img2img, save_requested=self.save_requested, video_infotext=self._video_infotext,
            info_extra=self._info_extra(), extra_clips=self._extra_clips(),
        ))


def on_cfg_denoiser(params) -> None:
    """Global ``on_cfg_denoiser`` callback: acts only for denoisers of a running job."""
    job = of(getattr(params.denoiser, "p", None))
    if job is not None and job.sampling and job.error is None:
        job.on_cfg_denoiser(params)
