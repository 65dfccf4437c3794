"""The "Animate Anyone" accordion in txt2img (AnimateDiff mode) in headless Chromium against a
real webui v1.10.1: enable it, generate, and the gallery shows the animation (an animated GIF).
Screenshots: test-artifacts/accordion-*.png."""

import io
import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e import animate_client as ac
from tests.support.browser import artifact_path

pytestmark = pytest.mark.e2e

FRAMES = 8
ACCORDION = "script_txt2img_animate_anyone_enable"
# Toggling any of the webui's InputAccordions (its own "Hires. fix" too) makes gradio 3.41's
# frontend throw this: the accordion's change event has a javascript function and no outputs.
WEBUI_ACCORDION_ERROR = "Cannot read properties of undefined (reading 'props')"


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def choose(page, elem_id, value, timeout_s=120, prefix=False, scope=""):
    """Pick a gr.Dropdown option (or the first starting with ``value``, for values that carry a suffix
    like ControlNet's 'name [hash]'); retried while a refresh may still be filling the choices.
    ``scope``: a selector the dropdown is inside (for ids the webui repeats per tab). Returns the chosen value."""
    where = f"{scope} #{elem_id}".strip()
    option = page.locator(f"{where} li[data-value{'^' if prefix else ''}='{value}']").first
    deadline = time.monotonic() + timeout_s
    while True:
        page.locator(f"{where} input").click()
        try:
            option.wait_for(state="visible", timeout=3000)
            value = option.get_attribute("data-value")
            option.click()
            break
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")
    page.wait_for_function("([where, value]) => document.querySelector(where + ' input').value == value", arg=[where, value])
    return value


GALLERY_FIRST = "#txt2img_gallery .thumbnail-item img, #txt2img_gallery .preview img"


def open_txt2img(page, webui, steps, timeout_ms=180_000):
    """txt2img at 64 x 64, seed 77; returns the list that collects the page's errors."""
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(webui.base_url + "/", wait_until="domcontentloaded")
    page.wait_for_selector("#txt2img_generate", state="visible", timeout=timeout_ms)
    page.fill("#txt2img_prompt textarea", "a paper boat on a pond")
    for elem_id, value in (("txt2img_width", 64), ("txt2img_height", 64), ("txt2img_steps", steps)):
        set_number(page, elem_id, value)
    page.fill("#txt2img_seed input", "77")
    return errors


def enable_animatediff(page, frames):
    """Open (= enable) the accordion, pick the tiny motion module and set the frame count."""
    page.locator(f"#{ACCORDION} .label-wrap").first.click()  # the webui's InputAccordion
    page.wait_for_function(f"() => document.getElementById('{ACCORDION}-visible-checkbox').checked")
    # the modules were written after the UI was built: rescan, then pick one
    page.click("#script_txt2img_animate_anyone_refresh")
    choose(page, "script_txt2img_animate_anyone_motion_module", ac.MODULE)
    set_number(page, "script_txt2img_animate_anyone_frames", frames)


def generated_gif(page):
    """Wait for the result; the first gallery item must be a 64 px wide animated GIF, returned as PIL."""
    from PIL import Image

    first = page.locator(GALLERY_FIRST).first
    first.wait_for(state="visible", timeout=480_000)
    page.wait_for_function("() => !document.querySelector('.progressDiv')", timeout=480_000)
    src = first.get_attribute("src")
    assert src.split("?")[0].endswith(".gif"), src
    assert first.evaluate("img => img.naturalWidth") == 64
    served = page.request.get(src)
    assert served.ok
    return Image.open(io.BytesIO(served.body()))


def test_accordion_animates_in_txt2img(webui, page):
    ac.motion_folder(webui)  # tiny motion modules in <data-dir>/models/AnimateDiff
    errors = open_txt2img(page, webui, steps=3)
    enable_animatediff(page, FRAMES)
    page.locator(f"#{ACCORDION}").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("accordion-01-enabled.png")), full_page=True)

    page.click("#txt2img_generate")
    gif = generated_gif(page)
    assert gif.format == "GIF" and gif.n_frames == FRAMES
    info = page.inner_text("#html_info_txt2img")
    assert "Animate Anyone:" in info and ac.MODULE in info, info
    page.locator("#txt2img_gallery").scroll_into_view_if_needed()
    page.screenshot(path=str(artifact_path("accordion-02-result.png")), full_page=True)
    assert not [e for e in errors if e != WEBUI_ACCORDION_ERROR], errors


def test_accordion_options_reach_the_job(webui, page):
    """Ping-pong, motion scale keyframes, FreeNoise and FreeInit set in the accordion: the video plays
    forward and back, and the infotext records every option as the job ran it."""
    ac.motion_folder(webui)
    errors = open_txt2img(page, webui, steps=2)
    enable_animatediff(page, FRAMES)
    prefix = "script_txt2img_animate_anyone_"
    page.click(f"#{prefix}pingpong label")
    box = page.locator(f"#{prefix}motion_scale textarea, #{prefix}motion_scale input").first
    box.fill("0:1, 7:0.5")
    page.locator(f"#{ACCORDION} .label-wrap:has-text('Context windows')").first.click()
    page.click(f"#{prefix}noise_init label:has-text('freenoise')")
    page.locator(f"#{ACCORDION} .label-wrap:has-text('FreeInit')").first.click()
    set_number(page, f"{prefix}freeinit_iterations", 1)
    page.click("#txt2img_generate")
    gif = generated_gif(page)
    assert gif.n_frames == 2 * FRAMES - 2  # forward, then back without repeating the ends
    info = page.inner_text("#html_info_txt2img").replace("\\", "").replace(" ", "")  # the webui quotes the JSON entry
    for words in ('"pingpong":true', '"motion_scale":"0:1,7:0.5"', '"noise_init":"freenoise"', '"freeinit_iterations":1'):
        assert words in info, (words, info)
    assert not [e for e in errors if e != WEBUI_ACCORDION_ERROR], errors


def test_xyz_plot_with_an_axis_of_ours_in_the_ui(webui, page):
    """In the UI an X/Y/Z cell's first image must be frame 0 (a UI job puts its animated preview first
    otherwise, a file path the grid cannot draw): the plot draws a grid of two cells."""
    ac.motion_folder(webui)
    errors = open_txt2img(page, webui, steps=2)
    enable_animatediff(page, 4)
    choose(page, "script_list", "X/Y/Z plot", scope="#txt2img_script_container")
    choose(page, "script_txt2img_xyz_plot_x_type", "[Animate Anyone] frames")
    page.fill("#script_txt2img_xyz_plot_x_values textarea, #script_txt2img_xyz_plot_x_values input", "4, 6")
    page.click("#txt2img_generate")
    first = page.locator(GALLERY_FIRST).first
    first.wait_for(state="visible", timeout=480_000)
    page.wait_for_function("() => !document.querySelector('.progressDiv')", timeout=480_000)
    width = first.evaluate("img => img.naturalWidth")
    assert width >= 128, width  # two 64 px cells side by side: the grid, not a single frame or a GIF
    assert not first.get_attribute("src").split("?")[0].endswith(".gif")
    assert not [e for e in errors if e != WEBUI_ACCORDION_ERROR], errors


def dropdown_options(page, elem_id):
    """The values a gr.Dropdown offers now (opened, read, closed)."""
    page.locator(f"#{elem_id} input").click()
    try:
        page.locator(f"#{elem_id} li[data-value]").first.wait_for(state="visible", timeout=10_000)
        return page.locator(f"#{elem_id} li[data-value]").evaluate_all("items => items.map(li => li.dataset.value)")
    except PlaywrightTimeout:
        return []  # not open (yet): the caller asks again
    finally:
        page.keyboard.press("Escape")


def test_the_motion_module_list_follows_the_checkpoint(webui, page):
    """SD1.5 modules for the SD1 checkpoint, SDXL modules once the quick-settings checkpoint dropdown
    switches to the SDXL checkpoint, and back."""
    from tests.support.webui_env import CHECKPOINT_NAME, SDXL_CHECKPOINT_NAME
    from tests.support.webui_server import checkpoint_stem, current_checkpoint, with_checkpoint

    ac.sdxl_motion_folder(webui)
    modules = "script_txt2img_animate_anyone_motion_module"
    with with_checkpoint(webui, CHECKPOINT_NAME):  # restored afterwards whatever the browser selected
        errors = open_txt2img(page, webui, steps=2)
        page.locator(f"#{ACCORDION} .label-wrap").first.click()

        def offered_after(action, wanted):
            action()
            deadline = time.monotonic() + 120
            while True:
                values = dropdown_options(page, modules)
                if wanted(values) or time.monotonic() > deadline:
                    return values
                time.sleep(1)

        def pick_checkpoint(name):
            # not choose(): the webui rewrites the value to the title with the hash once the model is loaded.
            # Typing filters the options; the webui's own API says when the model has switched.
            deadline = time.monotonic() + 120
            while checkpoint_stem(current_checkpoint(webui)) != name:
                assert time.monotonic() < deadline, f"the checkpoint dropdown did not switch to {name}"
                box = page.locator("#setting_sd_model_checkpoint input")
                box.click()
                box.fill(name)
                option = page.locator(f"#setting_sd_model_checkpoint li[data-value^='{name}']").first
                try:
                    option.wait_for(state="visible", timeout=3000)
                    option.click()
                except PlaywrightTimeout:
                    pass
                page.keyboard.press("Escape")
                time.sleep(1)

        def offered_after_choosing(checkpoint, wanted):
            return offered_after(lambda: pick_checkpoint(checkpoint), wanted)

        # the modules were written after the UI was built: rescan
        sd1 = offered_after(lambda: page.click("#script_txt2img_animate_anyone_refresh"), lambda v: ac.MODULE in v)
        assert ac.MODULE in sd1 and ac.V3_MODULE in sd1 and not any(v.startswith("sdxl/") for v in sd1), sd1

        sdxl = offered_after_choosing(SDXL_CHECKPOINT_NAME, lambda v: ac.HOTSHOT in v)
        assert {ac.AD_SDXL, ac.HOTSHOT} <= set(sdxl) and ac.MODULE not in sdxl and ac.V3_MODULE not in sdxl, sdxl
        selected = page.locator(f"#{modules} input").input_value()
        assert selected in sdxl, selected  # a selection that no longer fits is replaced by one that does
        page.screenshot(path=str(artifact_path("accordion-03-sdxl-modules.png")), full_page=True)
        back = offered_after_choosing(CHECKPOINT_NAME, lambda v: ac.MODULE in v)
        assert ac.MODULE in back and ac.HOTSHOT not in back, back
    assert not [e for e in errors if e != WEBUI_ACCORDION_ERROR], errors
