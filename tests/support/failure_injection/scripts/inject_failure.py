"""TEST ONLY (linked into the e2e webui's extensions/, never part of the extension): makes a sampling
step raise when the prompt holds the marker ``TEST_FAIL_AT_STEP_<n>``.

The end-to-end tests use it to prove that an exception in the middle of sampling leaves the webui's
model, ControlNet and the next generation exactly as they were. The webui swallows exceptions
raised by ``on_cfg_denoiser`` callbacks themselves, so the callback wraps the denoiser's inner
model for the one call of step ``n``; that call raises, as a failing UNet would.
"""

import re

from modules import script_callbacks

MARKER = re.compile(r"TEST_FAIL_AT_STEP_(\d+)")


class InjectedTestFailure(RuntimeError):
    pass


def _prompt_of(denoiser) -> str:
    p = getattr(denoiser, "p", None)
    return str(getattr(p, "prompt", "") or "") if p is not None else ""


def _raise_on_next_call(inner_model, step: int) -> None:
    had_own_forward = "forward" in vars(inner_model)
    previous = inner_model.forward

    def failing_forward(*_args, **_kwargs):
        if had_own_forward:  # leave the object as it was before raising
            inner_model.forward = previous
        else:
            del inner_model.forward
        raise InjectedTestFailure(f"TEST_FAIL_AT_STEP_{step}: failing on purpose at step {step}")

    inner_model.forward = failing_forward


def fail_at_marked_step(params) -> None:
    found = MARKER.search(_prompt_of(params.denoiser))
    if found is not None and params.sampling_step == int(found.group(1)):
        _raise_on_next_call(params.denoiser.inner_model, params.sampling_step)


script_callbacks.on_cfg_denoiser(fail_at_marked_step)
