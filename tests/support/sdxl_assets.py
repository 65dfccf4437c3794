"""A tiny random-weight SDXL checkpoint for the end-to-end tests, built offline.

``webui_env.py build-assets`` calls ``build(...)`` inside the webui's own Python, after it has
written the tiny CLIP text folder. Written to ``out``:

* ``hf/hub/models--<org>--<name>/`` (``BIGG_REPO``): an HF hub cache entry for a tiny OpenCLIP model,
  ``open_clip_config.json`` + ``open_clip_pytorch_model.bin``. sgm's ``FrozenOpenCLIPEmbedder2``
  (SDXL's second text encoder, ViT-bigG) builds its model with ``open_clip.create_model_and_transforms
  (arch, pretrained=version)``; open_clip 2.20 only knows its bundled configs or an ``hf-hub:<repo>``
  name, and for the latter it always loads the repository's weights file (even with ``pretrained=None``,
  which is what the webui passes while it builds a model whose text encoders are in the checkpoint).
  The weights are saved in torch's legacy (non-zip) format: the webui's pickle checker
  (``modules/safe.py``) rejects the ``.format_version`` entry that current torch writes into zip files.
* ``<name>.safetensors`` + ``<name>.yaml``: a random SDXL ``DiffusionEngine`` built from the webui's
  ``repositories/generative-models/configs/inference/sd_xl_base.yaml`` at tiny widths (so its keys are
  exactly what the webui loads: ``model.diffusion_model.*``, ``conditioner.embedders.0.transformer.*``,
  ``conditioner.embedders.1.model.*``, ``first_stage_model.*``, ``denoiser.sigmas``). The webui uses a
  checkpoint's same-named .yaml as its config, so it loads this one as SDXL.

Only the standard library is imported at module level (the test venv imports ``webui_env``, which
names this file in its cache key).
"""

import copy
import hashlib
import json
import sys

BIGG_REPO = "animate-anyone-e2e/tiny-open-clip-bigg"  # exists only in the local cache; never fetched

# The first text encoder (CLIP-L) is the tiny CLIP text folder of the SD1 recipe (4 layers, width 64);
# the second (OpenCLIP bigG) is as wide. crossattn = 64 + 64, vector = 64 (pooled) + 3 x 2 x 256.
TEXT_WIDTH = 64
TINY_OPEN_CLIP = {
    "embed_dim": TEXT_WIDTH,  # text_projection: pooled vector width
    # open_clip builds the vision tower too (sgm deletes it); as small as open_clip takes it.
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 32, "layers": 1, "mlp_ratio": 1.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": TEXT_WIDTH, "heads": 4, "layers": 4},
}
TINY_UNET = dict(model_channels=32, channel_mult=[1, 2, 4], transformer_depth=[0, 1, 1], num_head_channels=16,
                 context_dim=2 * TEXT_WIDTH, adm_in_channels=TEXT_WIDTH + 3 * 2 * 256)
TINY_VAE = dict(ch=32, num_res_blocks=1)
CLIP_L_LAYER_IDX = 3  # SDXL takes CLIP-L's penultimate hidden state (11 of 12); the tiny one has 4 layers


def open_clip_config():
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]  # OpenAI's
    return {"model_cfg": TINY_OPEN_CLIP,
            "preprocess_cfg": {"mean": mean, "std": std, "interpolation": "bicubic", "resize_mode": "shortest"}}


def write_open_clip_entry(out, seed):
    """The hub cache entry for ``BIGG_REPO``; returns the open_clip state dict it holds."""
    import open_clip
    import torch

    hub = out / "hf" / "hub"
    repo = hub / ("models--" + BIGG_REPO.replace("/", "--"))
    revision = hashlib.sha1(b"offline-" + BIGG_REPO.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "open_clip_config.json").write_text(json.dumps(open_clip_config(), indent=2), encoding="utf-8")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")

    torch.manual_seed(seed)
    model = open_clip.CLIP(**copy.deepcopy(TINY_OPEN_CLIP))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, str(snapshot / "open_clip_pytorch_model.bin"), _use_new_zipfile_serialization=False)
    return state


def build(webui, out, final, tiny_clip_final, name, seed):
    """Write the bigG hub entry and ``<name>.safetensors`` / ``<name>.yaml`` into ``out``.

    ``out`` must already hold ``tiny-clip/`` (the CLIP-L text folder); ``tiny_clip_final`` is where
    that folder will live once the cache entry is moved (the path inside the yaml). HF_HOME must point
    at ``out/hf`` with the hub offline, as ``webui_env.ensure_assets`` sets it.
    """
    sys.path.insert(0, str(webui / "repositories" / "generative-models"))
    import torch
    import transformers
    from omegaconf import OmegaConf
    from safetensors.torch import save_file
    from sgm.util import instantiate_from_config

    bigg_state = write_open_clip_entry(out, seed + 1)

    # CLIP-L is built from its config only (random init), as the webui does before loading weights.
    transformers.CLIPTextModel.from_pretrained = classmethod(
        lambda cls, path, *a, **kw: cls(transformers.CLIPTextConfig.from_pretrained(path)))

    cfg = copy.deepcopy(OmegaConf.load(webui / "repositories" / "generative-models" / "configs" / "inference" / "sd_xl_base.yaml"))
    params = cfg.model.params
    params.network_config.params.update(copy.deepcopy(TINY_UNET))
    params.first_stage_config.params.ddconfig.update(TINY_VAE)
    embedders = params.conditioner_config.params.emb_models
    assert embedders[0].target.endswith("FrozenCLIPEmbedder") and embedders[1].target.endswith("FrozenOpenCLIPEmbedder2")
    embedders[0].params.update(version=str(out / "tiny-clip"), layer_idx=CLIP_L_LAYER_IDX)
    # pretrained=None: open_clip loads the hub entry's weights file for an hf-hub: name
    embedders[1].params.update(arch="hf-hub:" + BIGG_REPO, version=None)

    from webui_env import make_posterior_deterministic, randomize_zero_initialised  # the SD1 recipe's steps

    torch.manual_seed(seed)
    model = instantiate_from_config(cfg.model).eval()
    for part in (model.model, model.first_stage_model):  # the text encoders stay as built
        randomize_zero_initialised(part)
    # sgm's AutoencoderKL has the same quant_conv (2 * z_channels -> 2 * embed_dim) as ldm's and clamps the
    # log-variance to [-30, 20]
    make_posterior_deterministic(model.first_stage_model)

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    prefixes = ("model.diffusion_model.", "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.",
                "first_stage_model.", "denoiser.")
    stray = sorted(k for k in state if not k.startswith(prefixes))
    assert not stray, stray[:10]
    for key, value in bigg_state.items():  # the checkpoint's bigG text tower is the hub entry's
        if not key.startswith("visual."):
            assert torch.equal(state["conditioner.embedders.1.model." + key], value), key
    # What the webui tells SDXL by (modules/sd_models.py): a bigG ln_final, and the middle block's
    # attention (its absence would mean SSD-1B).
    for key in ("conditioner.embedders.1.model.ln_final.weight",
                "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"):
        assert key in state, key
    # One metadata key only: safetensors writes several in random order, which would change the file's hash.
    save_file(state, str(out / (name + ".safetensors")), metadata={"format": "pt"})

    embedders[0].params.version = str(tiny_clip_final)  # where the cache entry will live
    OmegaConf.save(cfg, str(out / (name + ".yaml")))
    print(f"{name}: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.2f}M values")
