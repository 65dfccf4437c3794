"""The "Animate Anyone" tab: from a reference image and a pose sequence to a playing video.

Left: the inputs (reference, pose video / images / JSON with a preview of the frames the model
will follow, size and sampling, context windows, formats, the weights folder, re-opening a
result). Right: Generate / Interrupt / Skip, the video, its frames, downloads and the infotext.

Generating goes through the webui's txt2img processing (tab_run) under ``wrap_gradio_gpu_call``:
the queue lock, the progress bar with live preview (javascript/animate_anyone_tab.js starts it
like the webui's own submit buttons), Interrupt and Skip. What can be checked without the queue
(reference, pose, weights folder) is checked first; every error is shown under the control it is
about (tab_errors).
"""

import os
from typing import Any, Dict, List

import gradio as gr

from ...errors import AnimateError
from .. import settings as settings_module
from . import tab_errors as errors
from . import tab_inputs as inputs
from . import tab_paste
from ..api.args import AA_DDIM, CONTEXT_SCHEDULES, FITS, FORMATS, POSE_SOURCES

TAB_ID = "animate_anyone"
TITLE = "Animate Anyone"
WEIGHTS_OPTION = "animate_anyone_weights_dir"
# The handlers' outputs after a generation, in this order; the last one must be HTML text
# (wrap_gradio_call appends the time taken to it, and puts errors there).
OUTPUTS = ("video", "gallery", "files", "generation_info", "infotext", "reference_error", "pose_error",
           "context_error", "weights_status", "html_log")


def eid(name: str) -> str:
    return f"{TAB_ID}_{name}"


class ReferenceImage(gr.Image):
    """gr.Image whose unreadable uploads reach the handlers as :class:`UnreadableUpload`, so the tab
    can say so under the control (a plain gr.Image fails the whole event in preprocessing)."""

    def preprocess(self, x):
        try:
            return super().preprocess(x)
        except Exception as e:  # PIL's UnidentifiedImageError, binascii errors, ...
            return inputs.UnreadableUpload(inputs.image_problem(e))

    def get_block_name(self):
        return "image"


class ComponentCatcher:
    """Components of other tabs the tab sends to (registered with ``on_after_component``)."""

    WANTED = ("extras_image_batch",)

    def __init__(self):
        self.components: Dict[str, Any] = {}

    def __call__(self, component, **kwargs):
        elem_id = kwargs.get("elem_id")
        if elem_id in self.WANTED:
            self.components[elem_id] = component


class Tab:
    """The tab's components and handlers (one per built UI)."""

    def __init__(self, extension_dir: str, catcher: ComponentCatcher):
        self.extension_dir = extension_dir
        self.catcher = catcher
        self.c: Dict[str, Any] = {}  # name -> component

    # --- settings ---------------------------------------------------------------------------------

    def settings(self):
        from modules import paths, shared

        return settings_module.read(shared.opts.data, self.extension_dir, paths.models_path)

    def limits(self):
        from ..jobs.animate_anyone_job import pose_limits

        return pose_limits(self.settings())

    def default_weights_dir(self) -> str:
        from modules import paths

        return os.path.join(paths.models_path, "AnimateAnyone")

    # --- layout -------------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        from modules.ui_components import ResizeHandleRow

        with gr.Blocks(analytics_enabled=False) as blocks:
            with ResizeHandleRow(equal_height=False):
                with gr.Column(variant="compact", elem_id=eid("settings")):
                    self._inputs_column()
                with gr.Column(elem_id=eid("results")):
                    self._results_column()
            self._wire()
        return blocks

    def _inputs_column(self):
        from modules.ui_components import FormRow, ToolButton

        c = self.c
        with gr.Row(elem_id=eid("uploads")):
            with gr.Column(elem_id=eid("reference_column"), min_width=160):
                c["reference_image"] = ReferenceImage(label="Reference image", type="pil", source="upload",
                                                      elem_id=eid("reference"), height=320)
                c["reference_note"] = gr.HTML(elem_id=eid("reference_note"))
                c["reference_error"] = gr.HTML(elem_id=eid("reference_error"))
            with gr.Column(elem_id=eid("pose_column"), min_width=160):
                with gr.Tabs(elem_id=eid("pose_tabs")):
                    with gr.Tab("Video", elem_id=eid("pose_video_tab")):
                        c["pose_video"] = gr.Video(label="Pose video (rendered skeletons, or a person with DWPose files)",
                                                   source="upload", elem_id=eid("pose_video"), height=320)
                    with gr.Tab("Images", elem_id=eid("pose_images_tab")):
                        c["pose_frames"] = gr.File(label="Pose images (used in file-name order)", file_count="multiple",
                                                   file_types=["image"], elem_id=eid("pose_images"))
                    with gr.Tab("JSON", elem_id=eid("pose_json_tab")):
                        c["pose_json"] = gr.File(label="OpenPose / ControlNet keypoint JSON", file_types=[".json"],
                                                 elem_id=eid("pose_json"))
                c["pose_error"] = gr.HTML(elem_id=eid("pose_error"))

        with gr.Accordion("Pose sequence", open=True, elem_id=eid("pose_options")):
            with FormRow():
                c["pose_source"] = gr.Radio(label="Pose video holds", choices=list(POSE_SOURCES), value="auto",
                                            elem_id=eid("pose_source"),
                                            tooltip="auto: skeleton frames are used as they are, other videos go through DWPose")
                c["fit"] = gr.Radio(label="Fit to the size", choices=list(FITS), value="resize", elem_id=eid("fit"),
                                    tooltip="resize: stretch to the size (as the reference pipeline does); letterbox: keep proportions")
            with FormRow():
                c["pose_stride"] = gr.Number(label="Stride (every n-th frame)", value=1, precision=0, minimum=1, elem_id=eid("pose_stride"))
                c["pose_fps"] = gr.Number(label="Pose fps (0 = the video's own)", value=0, minimum=0, elem_id=eid("pose_fps"),
                                          tooltip="Resample the pose sequence to this frame rate")
                c["pose_max_frames"] = gr.Number(label="Frames (0 = all)", value=0, precision=0, minimum=0, elem_id=eid("pose_max_frames"),
                                                 tooltip="Use at most this many pose frames")
            with FormRow():
                c["draw_face"] = gr.Checkbox(label="Draw face points (JSON / detected poses)", value=True, elem_id=eid("draw_face"))
                c["draw_hands"] = gr.Checkbox(label="Draw hands", value=True, elem_id=eid("draw_hands"))
            with FormRow():
                c["retarget"] = gr.Checkbox(label="Retarget to the reference's body", value=False, elem_id=eid("retarget"),
                                            tooltip="The poses take the reference's proportions (needs keypoints: JSON or a person "
                                                    "video; the reference's from the file beside or DWPose)")
                c["reference_pose_json"] = gr.File(label="Reference's keypoints (OpenPose JSON, optional)", file_types=[".json"],
                                                   elem_id=eid("reference_pose_json"))
            c["pose_preview"] = gr.HTML(inputs.preview_html(None), elem_id=eid("pose_preview"))
            c["preview_key"] = gr.State(None)  # the values the preview shows

        with FormRow():
            c["width"] = gr.Slider(label="Width", minimum=64, maximum=2048, step=8, value=512, elem_id=eid("width"))
            c["height"] = gr.Slider(label="Height", minimum=64, maximum=2048, step=8, value=768, elem_id=eid("height"))
        with FormRow():
            c["steps"] = gr.Slider(label="Sampling steps", minimum=1, maximum=150, step=1, value=25, elem_id=eid("steps"))
            c["cfg_scale"] = gr.Slider(label="CFG scale", minimum=1.0, maximum=30.0, step=0.5, value=3.5, elem_id=eid("cfg_scale"))
        with FormRow():
            c["seed"] = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id=eid("seed"))
            c["random_seed"] = ToolButton("\U0001f3b2\ufe0f", elem_id=eid("random_seed"), tooltip="Random seed (-1)")
            c["reuse_seed"] = ToolButton("\u267b\ufe0f", elem_id=eid("reuse_seed"), tooltip="Reuse the seed of the last result")
            c["sampler"] = gr.Dropdown(label="Sampler", choices=self._samplers(), value=AA_DDIM, elem_id=eid("sampler"),
                                       tooltip="animate_anyone_ddim reproduces the reference pipeline; the webui's samplers run with v-prediction")
        with FormRow():
            c["fps"] = gr.Number(label="Output fps (0 = the pose's own)", value=0, minimum=0, elem_id=eid("fps"),
                                 tooltip="Playback speed of the video; the pose video's fps, or 8 for images and JSON, when 0")
            c["loop"] = gr.Number(label="Loop (GIF/WebP, 0 = forever)", value=0, precision=0, minimum=0, elem_id=eid("loop"))
        with FormRow():
            c["formats"] = gr.CheckboxGroup(label="Save formats", choices=list(FORMATS), value=["MP4"], elem_id=eid("formats"))
            c["pingpong"] = gr.Checkbox(label="Ping-pong (forward, then back)", value=False, elem_id=eid("pingpong"))
        with gr.Accordion("Context windows (long pose sequences)", open=False, elem_id=eid("context")):
            with FormRow():
                c["context_length"] = gr.Number(label="Context length (0 = 24)", value=0, precision=0, minimum=0, elem_id=eid("context_length"))
                c["context_overlap"] = gr.Number(label="Overlap", value=4, precision=0, minimum=0, elem_id=eid("context_overlap"))
            with FormRow():
                c["context_schedule"] = gr.Radio(
                    label="Window schedule", choices=list(CONTEXT_SCHEDULES), value="reference", elem_id=eid("context_schedule"),
                    info="reference: as the release was shown (windows wrap: the end attends to the start); open: no "
                         "wrap, better for clips that do not loop; loop: seamless loops, windows shift every step")
        c["context_error"] = gr.HTML(elem_id=eid("context_error"))

        with gr.Accordion("Weights", open=True, elem_id=eid("weights")):
            with FormRow():
                c["weights_dir"] = gr.Textbox(label="Animate Anyone weights folder",
                                              info="Empty: models/AnimateAnyone. Press Enter to use another folder "
                                                   "(the same option as in Settings > Animate Anyone).",
                                              value=self._configured_weights_dir, placeholder=self.default_weights_dir(),
                                              elem_id=eid("weights_dir"))
                c["weights_refresh"] = ToolButton("\U0001f504", elem_id=eid("weights_refresh"), tooltip="Reload the folder from Settings and check its files")
            c["weights_status"] = gr.HTML(value=self._weights_status_now, elem_id=eid("weights_status"))

        with gr.Accordion("Re-open a result", open=False, elem_id=eid("reopen")):
            c["paste_infotext"] = gr.Textbox(label="Infotext", lines=3, elem_id=eid("paste_infotext"),
                                             placeholder="Paste the infotext of a result here (empty: the last generation's)")
            c["paste_file"] = gr.File(label="...or drop a result (MP4, WebM, GIF, WebP or PNG) to read its infotext",
                                      elem_id=eid("paste_file"))
            with gr.Row():
                c["paste"] = gr.Button("Restore the settings", elem_id=eid("paste"))
            c["paste_note"] = gr.HTML(elem_id=eid("paste_note"))

    def _results_column(self):
        from modules import ui_toprow
        from modules.ui_components import ToolButton

        c = self.c
        toprow = ui_toprow.Toprow(is_img2img=False, is_compact=True, id_part=TAB_ID)
        toprow.create_inline_toprow_image()
        c["generate"] = toprow.submit
        c["task_id"] = gr.Textbox(visible=False, elem_id=eid("task_id"))
        with gr.Column(variant="panel", elem_id=eid("results_panel")):
            c["html_log"] = gr.HTML(elem_id=eid("html_log"), elem_classes="html-log")
            with gr.Group(elem_id=eid("video_container")):
                c["video"] = gr.Video(label="Video", interactive=False, autoplay=True, elem_id=eid("video"))
            with gr.Group(elem_id=eid("gallery_container")):
                c["gallery"] = gr.Gallery(label="Frames", elem_id=eid("gallery"), columns=4, height=260, preview=False,
                                          allow_preview=True)
            with gr.Row(elem_id=f"image_buttons_{TAB_ID}", elem_classes="image-buttons"):
                c["send_to_img2img"] = ToolButton("\U0001f5bc\ufe0f", elem_id=eid("send_to_img2img"), tooltip="Send the selected frame to img2img")
                c["send_to_inpaint"] = ToolButton("\U0001f3a8\ufe0f", elem_id=eid("send_to_inpaint"), tooltip="Send the selected frame to img2img inpaint")
                c["send_to_extras"] = ToolButton("\U0001f4d0", elem_id=eid("send_to_extras"), tooltip="Send the selected frame to Extras")
                c["send_frames_to_extras"] = ToolButton("\U0001f39e\ufe0f", elem_id=eid("send_frames_to_extras"),
                                                        tooltip="Send every frame to Extras > Batch Process (e.g. to upscale the video)")
            c["files"] = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id=eid("files"))
            c["infotext"] = gr.HTML(elem_id=f"html_info_{TAB_ID}", elem_classes="infotext")
            c["generation_info"] = gr.Textbox(visible=False, elem_id=eid("generation_info"))

    @staticmethod
    def _samplers() -> List[str]:
        from modules import sd_samplers

        return [AA_DDIM] + [name for name in sd_samplers.visible_sampler_names() if not name.startswith("Animate Anyone")]

    # --- events -------------------------------------------------------------------------------------

    def _wire(self):
        from modules import call_queue, infotext_utils

        c = self.c
        # gradio 3.41 drops an event that comes while the same event is still running (e.g. an
        # upload right after a clear): each check is followed by a second look with the values
        # the page holds by then, which redoes the work only when they changed.
        pose_inputs = [c[name] for name in inputs.POSE_FIELDS]
        preview_outputs = [c["pose_preview"], c["pose_error"], c["preview_key"]]
        for name in inputs.POSE_FIELDS:
            component = c[name]
            for event in [component.change] + ([component.release] if isinstance(component, gr.Slider) else []):
                event(fn=self.preview, inputs=pose_inputs, outputs=preview_outputs, show_progress="minimal").then(
                    fn=self.preview_if_changed, inputs=[c["preview_key"]] + pose_inputs, outputs=preview_outputs,
                    show_progress="minimal")
        reference_inputs = [c["reference_image"], c["width"], c["height"], c["fit"]]
        reference_outputs = [c["reference_note"], c["reference_error"]]
        for name in ("reference_image", "fit", "width", "height"):
            c[name].change(fn=self.check_reference, inputs=reference_inputs, outputs=reference_outputs, show_progress="hidden").then(
                fn=self.check_reference, inputs=reference_inputs, outputs=reference_outputs, show_progress="hidden")

        c["weights_refresh"].click(fn=self.refresh_weights, inputs=[], outputs=[c["weights_dir"], c["weights_status"]])
        # Only Enter writes the setting: leaving the box must not put back a folder that was
        # changed in Settings since this page was loaded.
        c["weights_dir"].submit(fn=self.set_weights_dir, inputs=[c["weights_dir"]], outputs=[c["weights_status"]])

        c["random_seed"].click(fn=lambda: -1, inputs=[], outputs=[c["seed"]], show_progress="hidden")
        c["reuse_seed"].click(fn=tab_paste.seed_of, inputs=[c["generation_info"]], outputs=[c["seed"]], show_progress="hidden")

        queued = call_queue.wrap_gradio_gpu_call(self._run, extra_outputs=[gr.update()] * (len(OUTPUTS) - 1))

        def generate(id_task: str, request: gr.Request, *values):
            return self.generate(queued, id_task, request, values)

        c["generate"].click(
            fn=generate,
            _js="animate_anyone_submit",
            inputs=[c["task_id"]] + [c[name] for name in inputs.TAB_FIELDS],
            outputs=[c[name] for name in OUTPUTS],
            show_progress="hidden",
        )

        for target in ("img2img", "inpaint", "extras"):
            infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
                paste_button=c[f"send_to_{target}"], tabname=target, source_image_component=c["gallery"]))
        batch = self.catcher.components.get("extras_image_batch")
        if batch is not None:
            c["send_frames_to_extras"].click(fn=tab_paste.gallery_files, _js="animate_anyone_to_extras_batch",
                                             inputs=[c["gallery"]], outputs=[batch], show_progress="hidden")
        else:  # the Extras tab is hidden or changed: nothing to send to
            c["send_frames_to_extras"].visible = False

        c["paste_file"].change(fn=tab_paste.infotext_of_file, inputs=[c["paste_file"]],
                               outputs=[c["paste_infotext"], c["paste_note"]], show_progress="hidden")
        infotext_utils.add_paste_fields(TAB_ID, c["reference_image"], tab_paste.paste_fields(c, self._samplers()))
        infotext_utils.register_paste_params_button(infotext_utils.ParamBinding(
            paste_button=c["paste"], tabname=TAB_ID, source_text_component=c["paste_infotext"]))

    # --- handlers -----------------------------------------------------------------------------------

    def preview(self, *values):
        key = inputs.values_key(values)
        values = dict(zip(inputs.POSE_FIELDS, values))
        try:
            return inputs.preview_html(inputs.pose_preview(values, self.limits())), "", key
        except AnimateError as e:
            return inputs.preview_html(None), errors.error_html([errors.for_people(str(e))]), key
        except OSError as e:  # an upload that vanished from the temp folder
            return inputs.preview_html(None), errors.error_html([f"could not read the upload: {e}"]), key

    def preview_if_changed(self, key, *values):
        if key == inputs.values_key(values):
            return gr.update(), gr.update(), key
        return self.preview(*values)

    @staticmethod
    def check_reference(image, width, height, fit):
        problem = inputs.reference_problem(image)
        if problem and image is None:
            return "", ""  # nothing uploaded yet: nothing to complain about until Generate
        if problem:
            return "", errors.error_html([errors.for_people(problem)])
        return errors.note_html(inputs.reference_note(image, int(width), int(height), fit)), ""

    def _configured_weights_dir(self) -> str:
        from modules import shared

        return shared.opts.data.get(WEIGHTS_OPTION, "") or ""

    def _weights_status_now(self) -> str:
        return inputs.weights_status(self.settings().weights_dir)[0]

    def refresh_weights(self):
        return self._configured_weights_dir(), self._weights_status_now()

    def set_weights_dir(self, folder: str):
        """The folder box is the setting itself: what is typed there is what generations use."""
        from modules import shared

        folder = (folder or "").strip()
        if folder != self._configured_weights_dir():
            shared.opts.set(WEIGHTS_OPTION, folder)
            shared.opts.save(shared.config_filename)
        return self._weights_status_now()

    def generate(self, queued, id_task, request, values):
        """Check what can be checked without the queue, then queue the job."""
        from modules import progress

        values = inputs.named(values)
        settings = self.settings()
        try:
            problems = inputs.problems_before_queue(values, self.limits(), settings.weights_dir)
        except Exception as e:  # e.g. an upload that vanished from the temp folder
            problems = [f"could not read the inputs: {e}"]
        if problems:
            progress.finish_task(id_task)  # stops the page's progress bar
            return self._error_outputs(problems, settings.weights_dir)
        return queued(id_task, request, values)

    def _run(self, id_task, request, values):
        from modules.ui_common import plaintext_to_html

        from . import tab_run

        settings = self.settings()
        width, height = inputs.size_of(values)
        try:
            result = tab_run.run(inputs.args_dict(values), width, height, int(values["steps"]), float(values["cfg_scale"]),
                                 int(values["seed"] if values["seed"] is not None else -1),
                                 user=getattr(request, "username", None))
        except AnimateError as e:  # the job's RequestError: bad input found inside the job
            return self._error_outputs([str(e)], settings.weights_dir)
        log = errors.note_html(result.message)
        return (
            result.video,
            result.frames,
            result.files or None,
            result.info_js,
            plaintext_to_html(result.infotext),
            "",
            "",
            "",
            inputs.weights_status(settings.weights_dir)[0],
            log,
        )

    def _error_outputs(self, problems: List[str], weights_folder: str):
        grouped = errors.sort_messages(problems)
        weights = gr.update()
        if grouped[errors.WEIGHTS]:
            weights = inputs.weights_status(weights_folder, grouped[errors.WEIGHTS])[0]
        return (
            gr.update(), gr.update(), gr.update(), gr.update(), gr.update(),
            errors.error_html(grouped[errors.REFERENCE]),
            errors.error_html(grouped[errors.POSE]),
            errors.error_html(grouped[errors.CONTEXT]),
            weights,
            errors.error_html(grouped[errors.GENERAL]),
        )


def create_tab(extension_dir: str, catcher: ComponentCatcher):
    """``on_ui_tabs`` callback."""
    return [(Tab(extension_dir, catcher).build(), TITLE, TAB_ID)]
