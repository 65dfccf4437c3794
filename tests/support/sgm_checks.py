"""SDXL motion modules in the webui's own SDXL UNet (``sgm``), run with the webui's Python.

``sgm`` (Stability-AI/generative-models, what the webui loads SDXL with) is not on PyPI and needs the
webui's packages (pytorch_lightning, open_clip, ...), so ``tests/test_motion_sgm.py`` runs this file
as a script with ``$WEBUI_DIR``'s Python and checks the JSON it prints:

    python sgm_checks.py --webui $WEBUI_DIR --out report.json

Measured here (the test decides what passes):

* ``layout``: an sgm ``UNetModel`` built from the webui's ``sd_xl_base.yaml`` network config at tiny
  widths takes the state dict of the ldm SDXL-layout UNet the CI tests use (same keys), and both give
  the same output -- so the CI tests' ldm stand-in is the webui's UNet;
* per family (AD-SDXL beta, HotShot-XL): the injected sgm UNet's output against the injected ldm UNet's
  (whose modules are checked against diffusers / a formula in tests/test_motion_sdxl.py), where the
  modules went, the cross-frame norm hooks (HotShot: on sgm's ``GroupNorm32``), bit-identical restore;
* a zero-``proj_out`` AD-SDXL module leaves the output exactly unchanged; an SD1.5 module is refused;
* ``schedule``: sgm's ``LegacyDDPMDiscretization`` (SDXL's own schedule) against our ``"sdxl"`` preset;
* ``pooled_width``: the pooled text part of the full-size ``sd_xl_base.yaml`` vector conditioning,
  from its real size/crop embedders and a meta-device full-size UNet.
"""

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[2]

TINY = dict(model_channels=32, context_dim=64, adm_in_channels=48, num_head_channels=16)
CLIPS, FRAMES, SIZE, TOKENS = 2, 4, 16, 5


def _paths(webui: Path) -> None:
    for path in (REPO_ROOT, webui / "repositories" / "generative-models", webui / "repositories" / "stable-diffusion-stability-ai"):
        sys.path.insert(0, str(path))


def _seeded_random(unet, seed):
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0.0, 0.05)
    return unet.eval()


def sgm_unet(webui: Path):
    from omegaconf import OmegaConf
    from sgm.util import instantiate_from_config

    config = OmegaConf.load(webui / "repositories" / "generative-models" / "configs" / "inference" / "sd_xl_base.yaml")
    network = config.model.params.network_config
    network.params.update(dict(TINY, transformer_depth=[1, 1, 1], use_checkpoint=False, spatial_transformer_attn_type="softmax"))
    return instantiate_from_config(network)


def ldm_unet():
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(image_size=32, in_channels=4, out_channels=4, num_res_blocks=2, channel_mult=[1, 2, 4],
                     attention_resolutions=[2, 4], use_spatial_transformer=True, use_linear_in_transformer=True,
                     transformer_depth=1, num_classes="sequential", legacy=False, use_checkpoint=False, **TINY)


def _inputs():
    import torch

    g = torch.Generator().manual_seed(4)
    x = torch.randn(CLIPS * FRAMES, 4, SIZE, SIZE, generator=g)
    t = torch.full((x.shape[0],), 500)
    context = torch.randn(x.shape[0], TOKENS, TINY["context_dim"], generator=g)
    y = torch.randn(x.shape[0], TINY["adm_in_channels"], generator=g)
    return x, t, context, y


def _state_bytes(module):
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _holders(unet):
    def has(block):
        return any(getattr(m, "is_lib_animate_motion", False) for m in block)

    return {
        "input": [i for i, block in enumerate(unet.input_blocks) if has(block)],
        "middle": has(unet.middle_block),
        "output_before_upsample": [n for n, block in enumerate(unet.output_blocks)
                                   if type(block[-1]).__name__ == "Upsample" and getattr(block[-2], "is_lib_animate_motion", False)],
        "output_modules": [sum(1 for m in block if getattr(m, "is_lib_animate_motion", False)) for block in unet.output_blocks],
    }


def _norm_hooks(unet):
    """(hooked norm count, their class names) while an injection is active."""
    hooked = [m for m in unet.modules() if type(m).__name__ in ("GroupNorm32", "GroupNorm") and m._forward_pre_hooks]
    return len(hooked), sorted({f"{type(m).__module__}.{type(m).__name__}" for m in hooked})


def check_families(webui: Path, tmp: Path) -> dict:
    import torch

    from lib_animate.errors import IncompatibleModelError
    from lib_animate.motion import inject, load
    from lib_animate.motion.inject import check_compatible
    from tests.support import motion_files as mf

    report = {}
    with torch.no_grad():
        ldm = _seeded_random(ldm_unet(), 3)
        sgm = sgm_unet(webui).eval()
        missing, unexpected = sgm.load_state_dict(ldm.state_dict(), strict=False)
        report["layout"] = {"missing": list(missing), "unexpected": list(unexpected),
                            "resblocks": sum(1 for m in sgm.modules() if type(m).__name__ == "ResBlock"),
                            "sgm_class": f"{type(sgm).__module__}.{type(sgm).__name__}"}
        x, t, context, y = _inputs()
        plain_ldm, plain_sgm = ldm(x, t, context, y), sgm(x, t, context, y)
        report["layout"]["plain_rel_l2"] = _rel(plain_sgm, plain_ldm)

        for version in ("sdxl_beta", "hotshot"):
            path = mf.save(mf.sdxl_state(version), str(tmp / f"{version}.safetensors"))
            motion = load(path)
            before = _state_bytes(sgm)
            with inject(ldm, motion, FRAMES):
                moved_ldm = ldm(x, t, context, y)
            with inject(sgm, motion, FRAMES):
                holders = _holders(sgm)
                hooks, norm_classes = _norm_hooks(sgm)
                moved_sgm = sgm(x, t, context, y)
            report[version] = {
                "family": motion.version,
                "schedule": motion.family.schedule,
                "rel_l2_vs_ldm": _rel(moved_sgm, moved_ldm),
                "rel_l2_vs_plain": _rel(moved_sgm, plain_sgm),
                "holders": holders,
                "norm_hooks": hooks,
                "norm_classes": norm_classes,
                "restored_state": _state_bytes(sgm) == before,
                "restored_output": bool(torch.equal(sgm(x, t, context, y), plain_sgm)),
                "hooks_left": sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in sgm.modules()),
            }

        zero = mf.sdxl_state("sdxl_beta", zero_proj_out=True)
        with inject(sgm, load(mf.save(zero, str(tmp / "zero.safetensors"))), FRAMES):
            report["zero_proj_out_identical"] = bool(torch.equal(sgm(x, t, context, y), plain_sgm))

        sd15 = load(mf.save(mf.original_state("v3"), str(tmp / "v3.safetensors")))
        try:
            check_compatible(sgm, sd15)
            report["sd15_module_refused"] = None
        except IncompatibleModelError as e:
            report["sd15_module_refused"] = str(e)
    return report


def check_schedule() -> dict:
    import torch
    from sgm.modules.diffusionmodules.discretizer import LegacyDDPMDiscretization

    from lib_animate.sampling.schedules import get_schedule

    sgm_table = torch.tensor(LegacyDDPMDiscretization().alphas_cumprod, dtype=torch.float64)
    ours = get_schedule("sdxl").alphas_cumprod()
    ad_sdxl = get_schedule("animatediff_sdxl").alphas_cumprod()
    return {"sdxl_max_abs_diff": float((sgm_table - ours).abs().max()),
            "animatediff_sdxl_differs_by": float((sgm_table - ad_sdxl).abs().max())}


def check_pooled_width(webui: Path) -> dict:
    import torch
    from omegaconf import OmegaConf
    from sgm.util import instantiate_from_config

    from lib_animate.webui.jobs.model_kind import sdxl_pooled_width

    config = OmegaConf.load(webui / "repositories" / "generative-models" / "configs" / "inference" / "sd_xl_base.yaml")
    # the text encoders need their weights; the size/crop embedders are what the split depends on
    size_embedders = [instantiate_from_config(e) for e in config.model.params.conditioner_config.params.emb_models
                      if e.input_key != "txt"]
    for e, spec in zip(size_embedders, [e for e in config.model.params.conditioner_config.params.emb_models if e.input_key != "txt"]):
        e.input_key = spec.input_key  # GeneralConditioner sets it on each embedder the same way
    with torch.device("meta"):
        unet = instantiate_from_config(config.model.params.network_config)
    model = SimpleNamespace(conditioner=SimpleNamespace(embedders=size_embedders),
                            model=SimpleNamespace(diffusion_model=unet), sd_checkpoint_info=None)
    return {"vector_width": int(unet.label_emb[0][0].in_features), "pooled_width": sdxl_pooled_width(model),
            "size_keys": [e.input_key for e in size_embedders]}


def check_kinds(webui: Path) -> dict:
    """What the jobs make of a base, a refiner and an inpainting SDXL model: the webui's flags
    (modules/sd_models.py set_model_type) on a holder of the configs' real size/score embedders."""
    from omegaconf import OmegaConf
    from sgm.util import instantiate_from_config

    from lib_animate.webui.errors import RequestError
    from lib_animate.webui.jobs import model_kind

    def model(config_name, **flags):
        config = OmegaConf.load(webui / "repositories" / "generative-models" / "configs" / "inference" / config_name)
        embedders = []
        for spec in config.model.params.conditioner_config.params.emb_models:
            if spec.input_key != "txt":
                embedder = instantiate_from_config(spec)
                embedder.input_key = spec.input_key
                embedders.append(embedder)
        info = SimpleNamespace(title=f"{config_name} [0123456789]")
        return SimpleNamespace(conditioner=SimpleNamespace(embedders=embedders), sd_checkpoint_info=info,
                               **dict(dict(is_sd1=False, is_sd2=False, is_sdxl=True, is_ssd=False, is_sd3=False,
                                           is_sdxl_inpaint=False), **flags))

    report = {}
    for name, m in (("base", model("sd_xl_base.yaml")), ("refiner", model("sd_xl_refiner.yaml")),
                    ("inpaint", model("sd_xl_base.yaml", is_sdxl_inpaint=True))):
        entry = {"describe": model_kind.describe(m), "family": model_kind.family(m)}
        for check, run in (("animatediff", lambda: model_kind.check_for_animatediff(m)),
                           ("sd1_only", lambda: model_kind.check_sd1_only(m, "The Animate Anyone mode"))):
            try:
                entry[check] = run()
            except RequestError as e:
                entry[check] = f"refused: {e}"
        report[name] = entry
    return report


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--webui", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    webui = args.webui.resolve()
    _paths(webui)
    with tempfile.TemporaryDirectory() as tmp:
        report = {"families": check_families(webui, Path(tmp)), "schedule": check_schedule(),
                  "pooled": check_pooled_width(webui), "kinds": check_kinds(webui)}
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
