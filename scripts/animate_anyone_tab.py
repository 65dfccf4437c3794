"""The webui entry point of the "Animate Anyone" tab (the layout and handlers: lib_animate.webui.ui.tab).

Only callbacks here: the generation itself runs through the "Animate Anyone" script of
scripts/animate_anyone.py in the txt2img pipeline, so no second Script class is defined.
"""

from modules import script_callbacks, scripts

from lib_animate.webui.ui import tab

EXTENSION_DIR = scripts.basedir()
catcher = tab.ComponentCatcher()  # other tabs' components the tab sends to (e.g. Extras' batch input)

script_callbacks.on_after_component(catcher)
script_callbacks.on_ui_tabs(lambda: tab.create_tab(EXTENSION_DIR, catcher))
