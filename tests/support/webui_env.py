"""Prepare a real stable-diffusion-webui v1.10.x checkout for end-to-end tests, offline.

Two sides live in this file:

* the test venv calls ``find_webui()`` and ``prepare_data_dir()``;
* the webui's own Python runs this file as a script (``python webui_env.py build-assets ...``)
  to write the offline files: CLIP tokenizer/config files derived from the BPE vocabulary that
  ships inside open-clip-torch, and a tiny random-weight SD1 checkpoint built from the webui's
  own ``configs/v1-inference.yaml`` (so its keys are exactly what the webui loads), and a tiny
  random-weight SDXL checkpoint (``sdxl_assets.py``).

Only the standard library is imported at module level so that both Pythons can load it.
Generated files are cached per webui commit and per version of this file (see ``cache_root``).
"""

import argparse
import copy
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_NAME = "sd-webui-animate-anyone"
FAILURE_INJECTION_EXTENSION = REPO_ROOT / "tests" / "support" / "failure_injection"
LOWVRAM_PROBE_EXTENSION = REPO_ROOT / "tests" / "support" / "lowvram_probe"
CHECKPOINT_NAME = "tiny-sd15"
SDXL_CHECKPOINT_NAME = "tiny-sdxl"  # also in models/Stable-diffusion; tests select it (see webui_server.with_checkpoint)
CLIP_REPO = "openai/clip-vit-large-patch14"
EXPECTED_COMMIT = "82a973c04367123ae98bd9abdf80d9eda9b910e2"  # v1.10.1
SETUP_HINT = "see tests/e2e/README.md"

# Environment variables that would change what the webui loads; never pass them through.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "COMMANDLINE_ARGS", "PYTHONSTARTUP")


class WebuiUnavailable(Exception):
    """No usable webui checkout; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class WebuiCheckout:
    root: Path
    python: Path
    commit: str


@dataclass(frozen=True)
class PreparedWebui:
    checkout: WebuiCheckout
    data_dir: Path
    hf_home: Path
    checkpoint: Path
    extension_link: Path
    sdxl_checkpoint: Path = None

    def env(self):
        """Environment for the webui process: offline hub, our HF cache, nothing inherited that alters imports."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(offline_env(self.hf_home))
        return env


def offline_env(hf_home):
    # Without the offline switches every hub lookup waits about 20 s before it fails.
    return {
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }


def find_webui(environ=None):
    """The webui checkout named by ``WEBUI_DIR`` (and ``WEBUI_PYTHON``), or WebuiUnavailable."""
    environ = os.environ if environ is None else environ
    raw = environ.get("WEBUI_DIR", "").strip()
    if not raw:
        raise WebuiUnavailable(f"WEBUI_DIR is not set; end-to-end tests need a webui v1.10.1 checkout ({SETUP_HINT})")
    root = Path(raw).expanduser().resolve()
    for rel in ("launch.py", "modules/launch_utils.py", "configs/v1-inference.yaml"):
        if not (root / rel).is_file():
            raise WebuiUnavailable(f"WEBUI_DIR={raw} is not a stable-diffusion-webui checkout: {rel} is missing ({SETUP_HINT})")
    # The webui cannot start without these; BLIP is only used by the interrogator.
    for rel in ("stable-diffusion-stability-ai/ldm", "generative-models/sgm", "k-diffusion/k_diffusion",
                "stable-diffusion-webui-assets"):
        if not (root / "repositories" / rel).exists():
            raise WebuiUnavailable(f"WEBUI_DIR={raw}: repositories/{rel} is missing; check out the repositories "
                                   f"pinned in modules/launch_utils.py ({SETUP_HINT})")
    python = Path(environ.get("WEBUI_PYTHON", "").strip() or root / "venv" / "bin" / "python")
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise WebuiUnavailable(f"the webui's Python {python} does not exist; create the venv or set WEBUI_PYTHON ({SETUP_HINT})")
    return WebuiCheckout(root=root, python=python, commit=_commit_of(root))


def _commit_of(root):
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    # Not a git checkout (e.g. an unpacked archive): key the cache on the launcher's content instead.
    return "nogit-" + hashlib.sha256((root / "modules" / "launch_utils.py").read_bytes()).hexdigest()[:28]


def cache_root():
    base = os.environ.get("ANIMATE_ANYONE_E2E_CACHE")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "animate-anyone-e2e"


RECIPE_FILES = (Path(__file__).resolve(), Path(__file__).resolve().with_name("sdxl_assets.py"))


def _recipe_hash():
    # Any edit of the recipe (this file or the SDXL part) gives a new cache entry.
    digest = hashlib.sha256()
    for path in RECIPE_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def ensure_assets(checkout, cache_dir=None):
    """The cached folder with ``hf/``, ``tiny-clip/`` and the tiny SD1 and SDXL checkpoints + yamls; built on first use."""
    cache_dir = Path(cache_dir) if cache_dir else cache_root()
    final = cache_dir / f"webui-{checkout.commit[:12]}-{_recipe_hash()}"
    if (final / "DONE").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=cache_dir))
    try:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(offline_env(tmp / "hf"))
        cmd = [str(checkout.python), str(Path(__file__).resolve()), "build-assets",
               "--webui", str(checkout.root), "--out", str(tmp), "--final", str(final)]
        proc = subprocess.run(cmd, cwd=str(checkout.root), env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(f"building the offline webui files failed (exit {proc.returncode}):\n$ {' '.join(cmd)}\n{tail}")
        (tmp / "DONE").write_text(proc.stdout)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "DONE").is_file():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _link(target, link):
    """Point ``link`` at ``target``, replacing a previous link; copies where symlinks are not allowed."""
    link = Path(link)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise RuntimeError(f"{link} exists and is not a link; refusing to replace it")
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(target, target_is_directory=Path(target).is_dir())
    except OSError:
        if Path(target).is_dir():
            raise
        shutil.copy2(target, link)


def find_controlnet(environ=None):
    """The sd-webui-controlnet checkout named by ``CONTROLNET_DIR``, or WebuiUnavailable."""
    environ = os.environ if environ is None else environ
    raw = environ.get("CONTROLNET_DIR", "").strip()
    if not raw:
        raise WebuiUnavailable(f"CONTROLNET_DIR is not set; the ControlNet end-to-end tests need an sd-webui-controlnet "
                               f"1.1.455 checkout ({SETUP_HINT})")
    root = Path(raw).expanduser().resolve()
    if not (root / "scripts" / "controlnet.py").is_file() or not (root / "internal_controlnet").is_dir():
        raise WebuiUnavailable(f"CONTROLNET_DIR={raw} is not an sd-webui-controlnet checkout (scripts/controlnet.py or "
                               f"internal_controlnet/ is missing; {SETUP_HINT})")
    return root


def prepare_data_dir(checkout, data_dir, cache_dir=None, controlnet=None):
    """Lay out a webui ``--data-dir``: the tiny checkpoint in models/, our extension in extensions/.

    v1.10.1 derives every user path from --data-dir (modules/paths_internal.py): models/ and
    extensions/ sit directly under it, and config.json, outputs/ and cache.json are written there.
    With ``controlnet`` (a checkout of sd-webui-controlnet), that extension is linked too, with
    tiny ControlNet / T2I-Adapter / IP-Adapter models in models/ControlNet and the test-only
    extension that sizes ControlNet's SD1 config for the tiny checkpoint.
    """
    assets = ensure_assets(checkout, cache_dir)
    data_dir = Path(data_dir).resolve()
    models = data_dir / "models" / "Stable-diffusion"
    # The same-named .yaml is the config the webui uses. The webui starts with tiny-sd15 whatever else is
    # there: WebuiServer passes --ckpt, which v1.10.1 writes into opts.sd_model_checkpoint at startup
    # (modules/sd_models.py list_models), over what config.json says.
    for name in (CHECKPOINT_NAME, SDXL_CHECKPOINT_NAME):
        for suffix in (".safetensors", ".yaml"):
            _link(assets / (name + suffix), models / (name + suffix))
    # Live previews of an SDXL job load models/VAE-approx/vaeapprox-sdxl.pt (modules/sd_vae_approx.py:
    # <data-dir>/models first, then the webui's models/) and download it when it is missing, which fails
    # offline with a 500. The webui ships only the SD1 one, model.pt; an SDXL latent has the same 4
    # channels, so that file (same VAEApprox architecture, other coefficients) stands in for it.
    approx = checkout.root / "models" / "VAE-approx" / "model.pt"
    if approx.is_file():
        _link(approx, data_dir / "models" / "VAE-approx" / "vaeapprox-sdxl.pt")
    extension_link = data_dir / "extensions" / EXTENSION_NAME
    _link(REPO_ROOT, extension_link)
    # test-only: a marker in the prompt makes a sampling step raise (tests/support/failure_injection)
    _link(FAILURE_INJECTION_EXTENSION, data_dir / "extensions" / "zz-test-failure-injection")
    # test-only: records what the --medvram / --lowvram policy moves (tests/support/lowvram_probe)
    _link(LOWVRAM_PROBE_EXTENSION, data_dir / "extensions" / "zz-test-lowvram-probe")
    if controlnet is not None:
        from tests.support import controlnet_files  # test venv only (torch)

        _link(Path(controlnet), data_dir / "extensions" / "sd-webui-controlnet")
        # "zz": loads after ControlNet's scripts
        _link(controlnet_files.TINY_CONFIG_EXTENSION, data_dir / "extensions" / "zz-test-tiny-controlnet-config")
        controlnet_files.write_models(data_dir / "models" / "ControlNet")
    (data_dir / "logs").mkdir(exist_ok=True)
    return PreparedWebui(checkout=checkout, data_dir=data_dir, hf_home=assets / "hf",
                         checkpoint=models / (CHECKPOINT_NAME + ".safetensors"), extension_link=extension_link,
                         sdxl_checkpoint=models / (SDXL_CHECKPOINT_NAME + ".safetensors"))


# --------------------------------------------------------------------------------------------
# Everything below runs inside the webui's Python (``build-assets``): it needs open_clip, torch,
# transformers, omegaconf, safetensors and the ``ldm`` package from the webui's repositories/.
# --------------------------------------------------------------------------------------------

TINY_CLIP = dict(hidden=64, layers=4, heads=4)
TINY_UNET = dict(model_channels=32, num_heads=8)
TINY_VAE = dict(ch=32, num_res_blocks=1)
SEED = 1234


def _bytes_to_unicode():
    # The byte-level mapping of GPT-2 / CLIP BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_tokenizer_files():
    """vocab.json / merges.txt / token configs of CLIP's tokenizer, built as CLIP's SimpleTokenizer builds it."""
    import open_clip.tokenizer

    lines = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    encoder = {token: i for i, token in enumerate(vocab)}
    assert len(merges) == 48894 and len(encoder) == 49408, (len(merges), len(encoder))

    def special(content, typed=False):
        d = {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True}
        return dict(d, __type="AddedToken") if typed else d

    return {
        "vocab.json": json.dumps(encoder, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
        "special_tokens_map.json": json.dumps({"bos_token": special("<|startoftext|>"), "eos_token": special("<|endoftext|>"),
                                               "unk_token": special("<|endoftext|>"), "pad_token": "<|endoftext|>"}, indent=2),
        "tokenizer_config.json": json.dumps({"unk_token": special("<|endoftext|>", True), "bos_token": special("<|startoftext|>", True),
                                             "eos_token": special("<|endoftext|>", True), "pad_token": "<|endoftext|>",
                                             "add_prefix_space": False, "errors": "replace", "do_lower_case": True,
                                             "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}, indent=2),
    }


def _text_config(hidden, layers, heads, intermediate=None, projection=None):
    return {"model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": hidden,
            "intermediate_size": intermediate or hidden * 4, "projection_dim": projection or hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "max_position_embeddings": 77,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
            "initializer_range": 0.02, "initializer_factor": 1.0, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}


def clip_l14_config():
    """config.json of openai/clip-vit-large-patch14 (shapes only; SD1 uses its text tower)."""
    vision = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "projection_dim": 768,
              "num_hidden_layers": 24, "num_attention_heads": 16, "num_channels": 3, "image_size": 224, "patch_size": 14,
              "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
              "initializer_range": 0.02, "initializer_factor": 1.0}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768, "logit_scale_init_value": 2.6592,
            "initializer_factor": 1.0, "torch_dtype": "float32",
            "text_config": _text_config(768, 12, 12, intermediate=3072, projection=768), "vision_config": vision}


def _write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def write_clip_files(out):
    """An HF hub cache entry for openai/clip-vit-large-patch14 (no weights) and a tiny CLIP text folder."""
    tokenizer = clip_tokenizer_files()
    hub = out / "hf" / "hub"
    repo = hub / ("models--" + CLIP_REPO.replace("/", "--"))
    revision = hashlib.sha1(b"offline-" + CLIP_REPO.encode()).hexdigest()
    _write_files(repo / "snapshots" / revision, dict(tokenizer, **{"config.json": json.dumps(clip_l14_config(), indent=2)}))
    _write_files(repo / "refs", {"main": revision})
    # transformers looks for this marker; without it, it warns about migrating an old cache layout.
    _write_files(hub, {"version.txt": "1"})
    tiny = dict(_text_config(**TINY_CLIP), architectures=["CLIPTextModel"], torch_dtype="float32")
    _write_files(out / "tiny-clip", dict(tokenizer, **{"config.json": json.dumps(tiny, indent=2)}))


def randomize_zero_initialised(model):
    """ldm and sgm zero-initialise some output layers (UNet out convs, proj_out); random values there make
    the UNet output depend on its input."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)) and torch.count_nonzero(module.weight) == 0:
            module.reset_parameters()


def make_posterior_deterministic(vae):
    """A trained VAE's posterior is nearly deterministic (tiny std); a random one's is not, and the webui
    samples it with the global RNG, which would make img2img differ from request to request. A very
    negative log-variance (the second half of quant_conv's outputs) makes it deterministic too."""
    import torch

    with torch.no_grad():
        quant = vae.quant_conv
        half = quant.out_channels // 2
        quant.weight[half:].zero_()
        quant.bias[half:].fill_(-30.0)


def build_checkpoint(webui, out, final):
    """A random SD1 LatentDiffusion at tiny widths from the webui's v1-inference.yaml, plus its .yaml."""
    sys.path.insert(0, str(webui / "repositories" / "stable-diffusion-stability-ai"))
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig
    import ldm.modules.encoders.modules as encoders
    from ldm.util import instantiate_from_config

    # The text encoder is built from its config only (random init), as the webui does before loading weights.
    encoders.CLIPTextModel.from_pretrained = classmethod(lambda cls, name, *a, **kw: cls(CLIPTextConfig.from_pretrained(name)))

    cfg = copy.deepcopy(OmegaConf.load(webui / "configs" / "v1-inference.yaml"))
    params = cfg.model.params
    params.unet_config.params.update(dict(TINY_UNET, context_dim=TINY_CLIP["hidden"]))
    params.first_stage_config.params.ddconfig.update(TINY_VAE)
    params.cond_stage_config.params = {"version": str(out / "tiny-clip")}

    torch.manual_seed(SEED)
    model = instantiate_from_config(cfg.model).eval()
    randomize_zero_initialised(model)
    make_posterior_deterministic(model.first_stage_model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # One metadata key only: safetensors writes several in random order, which would change the file's hash.
    save_file(state, str(out / (CHECKPOINT_NAME + ".safetensors")), metadata={"format": "pt"})

    params.cond_stage_config.params = {"version": str(final / "tiny-clip")}  # where the cache entry will live
    OmegaConf.save(cfg, str(out / (CHECKPOINT_NAME + ".yaml")))
    print(f"{CHECKPOINT_NAME}: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.2f}M values")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write offline CLIP files and a tiny random SD1 checkpoint for a webui.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-assets", help="run with the webui's Python")
    build.add_argument("--webui", required=True, type=Path)
    build.add_argument("--out", required=True, type=Path, help="folder to write into")
    build.add_argument("--final", type=Path, help="folder the output will be moved to (paths inside the yaml); default --out")
    args = parser.parse_args(argv)
    out, final, webui = args.out.resolve(), (args.final or args.out).resolve(), args.webui.resolve()
    write_clip_files(out)
    build_checkpoint(webui, out, final)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: tests.support is not a package here
    import sdxl_assets

    sdxl_assets.build(webui, out, final, final / "tiny-clip", SDXL_CHECKPOINT_NAME, SEED)


if __name__ == "__main__":
    main()
