"""--medvram / --lowvram: the job's own modules follow the webui's policy of one model part on the device
at a time, and the videos are what they are without the flags.

On this CPU-only machine (``--use-cpu all``) the policy's moves are no-ops, but the webui still keeps
its book of which module is "on the device" (``modules.lowvram.module_in_gpu``); the test-only
extension tests/support/lowvram_probe records every change of it during a request. What the
trace shows is what would move on a GPU: before sampling the CLIP encoder and the pose guider each
take the device while they run; during sampling the reference UNet and the swapped-in denoising
UNet take it, split into the parts the webui's --lowvram uses for its own UNet (whole under
--medvram, where the denoising UNet moves inside ``sd_model.model``); after the job the VAE has it,
and nothing of the job is left registered.
"""

import pytest

from tests.e2e import animate_client as ac
from tests.e2e.animate_client import pose_frames_json
from tests.e2e.test_animate_anyone_api import aa, release  # noqa: F401  (fixture)
from tests.e2e.test_animatediff_api import motion  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

PREFIX = "model.diffusion_model."


def traced(webui, body):
    assert webui.post("/animate-test/lowvram-probe/start").ok
    data = ac.ok(webui, body)
    response = webui.get("/animate-test/lowvram-probe/trace")
    assert response.ok, response.text()
    return data, response.json()


def unet_part_labels(count):
    """The labels of the webui's --lowvram parts, in the order one UNet call runs them."""
    blocks = (count - 2) // 2
    return ([PREFIX + "time_embed"] + [f"{PREFIX}input_blocks.{i}" for i in range(blocks)] + [PREFIX + "middle_block"]
            + [f"{PREFIX}output_blocks.{i}" for i in range(blocks)])


@pytest.fixture(scope="module")
def normal_videos(webui, release, motion):  # noqa: F811
    aa_body = aa(release, pose_json=pose_frames_json(6), context_length=4, context_overlap=1)
    ad_body = ac.payload({"enable": True, "motion_module": ac.MODULE, "frames": 6, "context_length": 4, "context_overlap": 1},
                         steps=3)
    return {"aa": (aa_body, ac.frames_of(ac.ok(webui, aa_body))), "ad": (ad_body, ac.frames_of(ac.ok(webui, ad_body))),
            "plain": ac.ok(webui, ac.payload(batch_size=2))["images"]}


def test_lowvram_splits_both_unets_like_the_webuis_and_moves_each_model_only_while_it_runs(webui, normal_videos):
    import numpy as np

    with webui.temporarily(extra_args=["--lowvram"]):
        body, expected = normal_videos["aa"]
        data, probe = traced(webui, body)
        assert probe["model_lowvram"]
        trace = probe["trace"]
        assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), expected))  # the same video
        assert "outside:CLIPVisionModelWithProjection" in trace and "outside:PoseGuider" in trace
        parts = unet_part_labels(len(probe["unet_part_pre_hooks"]))
        first_denoising = trace.index(parts[0])
        # the reference UNet, split as well, ran before the first denoising call: its time_embed, then its blocks
        reference = trace[:first_denoising]
        assert "outside:Sequential" in reference and reference.count("outside:TimestepEmbedSequential") == len(parts) - 1
        # every denoising UNet call takes the parts one at a time in the webui's order (our UNet is the one swapped in)
        calls = [label for label in trace[first_denoising:] if label.startswith(PREFIX)]
        assert len(calls) % len(parts) == 0 and calls[:len(parts)] == parts and len(calls) >= 3 * len(parts)
        # decoding last, then the webui's own send_everything_to_cpu: nothing is left on the device
        assert trace[-1] == "first_stage_model" and probe["now"] == "none"
        # the webui's own UNet is back with exactly its own hooks
        assert probe["unet_part_pre_hooks"] == [1] * len(parts) and probe["unet_pre_hooks"] == 0

        body, expected = normal_videos["ad"]
        data, probe = traced(webui, body)
        assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), expected))
        calls = [label for label in probe["trace"] if label.startswith(PREFIX)]
        assert calls[:len(parts)] == parts and not [label for label in probe["trace"] if label.startswith("outside:")]
        assert probe["trace"][-1] == "first_stage_model" and probe["unet_part_pre_hooks"] == [1] * len(parts)
        assert ac.ok(webui, ac.payload(batch_size=2))["images"] == normal_videos["plain"]


def test_medvram_moves_the_swapped_unet_inside_the_webuis_model_and_the_others_whole(webui, normal_videos):
    import numpy as np

    with webui.temporarily(extra_args=["--medvram"]):
        body, expected = normal_videos["aa"]
        data, probe = traced(webui, body)
        assert probe["model_lowvram"]
        trace = probe["trace"]
        assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), expected))
        assert "outside:CLIPVisionModelWithProjection" in trace and "outside:PoseGuider" in trace
        # the reference UNet whole, then sd_model.model (holding the swapped-in UNet) for the denoising calls
        assert trace.index("outside:AnimateAnyoneUNet") < trace.index("model")
        assert not [label for label in trace if label.startswith(PREFIX)]  # no split under --medvram
        assert trace[-1] == "first_stage_model" and probe["now"] == "none"
        assert set(probe["unet_part_pre_hooks"]) == {0} and probe["unet_pre_hooks"] == 0

        body, expected = normal_videos["ad"]
        data, probe = traced(webui, body)
        assert all(np.array_equal(a, b) for a, b in zip(ac.frames_of(data), expected))
        assert "model" in probe["trace"] and not [label for label in probe["trace"] if label.startswith("outside:")]
        assert ac.ok(webui, ac.payload(batch_size=2))["images"] == normal_videos["plain"]
