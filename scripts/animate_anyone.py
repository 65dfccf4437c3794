"""The webui entry point: the "Animate Anyone" AlwaysVisible script and its callbacks.

Thin by design: everything it does lives in lib_animate.webui. The API key is the title,
lower-cased: ``alwayson_scripts: {"animate anyone": {"args": [{...}]}}``.
"""

from modules import script_callbacks, scripts, shared

from lib_animate.webui import settings
from lib_animate.webui.jobs import aa_sampler
from lib_animate.webui.jobs import job as video_job
from lib_animate.webui.ui import accordion as video_ui
from lib_animate.webui.ui import module_list, xyz_axes

EXTENSION_DIR = scripts.basedir()
environment = video_job.Environment(EXTENSION_DIR)
module_dropdowns = module_list.ModuleDropdowns(lambda: environment.library())  # follow the checkpoint dropdown


class AnimateAnyoneScript(scripts.Script):
    def title(self):
        return "Animate Anyone"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        settings_now = environment.settings()
        return video_ui.build(self, is_img2img, environment.library(settings_now), settings_now, module_dropdowns)

    def before_process(self, p, *args):
        video_job.begin(p, args, environment, self.is_img2img, lambda values: video_ui.values_to_dict(values, self.is_img2img))

    def process(self, p, *args):
        job = video_job.of(p)
        if job is not None:
            job.process()

    def postprocess(self, p, processed, *args):
        job = video_job.of(p)
        if job is not None:
            job.postprocess(processed)


aa_sampler.register()  # "Animate Anyone (DDIM)" in the sampler lists (before the UI is built)
script_callbacks.on_script_unloaded(aa_sampler.unregister)
script_callbacks.on_cfg_denoiser(video_job.on_cfg_denoiser)
script_callbacks.on_after_component(module_dropdowns)
settings.register(shared)  # now: the API needs the options also when no UI is built (--nowebui)
script_callbacks.on_ui_settings(lambda: settings.register(shared))
# X/Y/Z plot axes for our fields: added before the UI copies the plot's axis list (idempotent)
script_callbacks.on_before_ui(lambda: xyz_axes.register(lambda: environment.library().modules()))
