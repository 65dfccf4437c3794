"""What the webui's loaded checkpoint is, and which video jobs it can run.

The webui v1.10 sets ``is_sd1`` / ``is_sd2`` / ``is_sdxl`` / ``is_ssd`` / ``is_sd3`` and
``is_sdxl_inpaint`` on its model (``modules/sd_models.py``: ``set_model_type``); an SDXL *refiner*
is ``is_sdxl`` too, told apart here by its aesthetic-score conditioning (``sd_xl_refiner.yaml``).

* AnimateDiff mode: SD1.x (SD1.5 motion modules) and SDXL (AnimateDiff-SDXL, HotShot-XL).
* Animate Anyone mode and the character option: SD1.x only (the released weights are SD1.5).
* Refused everywhere: refiners (no motion module fits them; they also swap the model mid-job as a
  refiner), 9-channel inpainting checkpoints, SD2.x and SD3.

Prompt travel on SDXL needs the split of the ``vector`` conditioning into the pooled text
embedding and the size/crop embeddings: :func:`sdxl_pooled_width`.
"""

from typing import Optional

from ..errors import RequestError

SD1, SDXL = "SD1.x", "SDXL"

# Columns of each non-text input of the SDXL conditioner, as the webui builds them
# (modules/sd_models_xl.py, get_learned_conditioning): [height, width], [top, left], [height, width], [score].
SDXL_SIZE_INPUT_COLUMNS = {"original_size_as_tuple": 2, "crop_coords_top_left": 2, "target_size_as_tuple": 2,
                           "aesthetic_score": 1}


def _embedders(sd_model) -> list:
    conditioner = getattr(sd_model, "conditioner", None)
    return list(getattr(conditioner, "embedders", None) or [])


def is_refiner(sd_model) -> bool:
    return bool(getattr(sd_model, "is_sdxl", False)) and any(
        getattr(e, "input_key", None) == "aesthetic_score" for e in _embedders(sd_model))


def describe(sd_model) -> str:
    """A user-facing name of the checkpoint's kind."""
    flag = lambda name: bool(getattr(sd_model, name, False))  # noqa: E731
    if flag("is_sd3"):
        return "SD3"
    if is_refiner(sd_model):
        return "an SDXL refiner"
    if flag("is_sdxl_inpaint"):
        return "an SDXL inpainting checkpoint (9 input channels)"
    if flag("is_ssd"):
        return "SSD-1B (a distilled SDXL)"
    if flag("is_sdxl"):
        return SDXL
    if flag("is_sd2"):
        return "SD2.x"
    if flag("is_sd1"):
        return SD1
    return "not SD1.x or SDXL"


def checkpoint_name(sd_model) -> str:
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return getattr(info, "title", None) or getattr(info, "name", None) or "the loaded checkpoint"


def family(sd_model) -> Optional[str]:
    """``SD1`` or ``SDXL`` when the checkpoint can take motion modules of that family, else None."""
    kind = describe(sd_model)
    if kind == SD1:
        return SD1
    if kind == SDXL or kind.startswith("SSD-1B"):
        return SDXL
    return None


def checkpoint_file_family(path: str) -> Optional[str]:
    """``SD1`` / ``SDXL`` from a checkpoint file's tensor names (not loaded), None when they do not tell
    or the file is of another kind (SD2, a refiner, a legacy pickle)."""
    from ...safe_load import read_keys

    keys = read_keys(path)
    if not keys:
        return None
    names = set(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in names):  # SDXL base: CLIP-L + OpenCLIP bigG
        return SDXL
    if any(k.startswith("cond_stage_model.transformer.") for k in names):  # SD1: CLIP-L (SD2: ...model.)
        return SD1
    return None


def check_for_animatediff(sd_model) -> str:
    """The AnimateDiff mode runs on SD1.x and SDXL checkpoints; returns the family."""
    found = family(sd_model)
    if found is None:
        kind = describe(sd_model)
        why = {
            "an SDXL refiner": "no motion module is made for a refiner; load an SDXL base checkpoint (or a fine-tune of it)",
            "an SDXL inpainting checkpoint (9 input channels)": "its UNet takes the masked image as extra input channels, "
                                                                "which video jobs do not provide; load a non-inpainting SDXL checkpoint",
        }.get(kind, "motion modules exist for SD1.5 and SDXL checkpoints only")
        raise RequestError(f"AnimateDiff cannot run on '{checkpoint_name(sd_model)}', which is {kind}: {why}")
    return found


def check_sd1_only(sd_model, what: str) -> None:
    """Modes whose released weights are SD1.5 (Animate Anyone, the character option)."""
    if family(sd_model) != SD1:
        raise RequestError(f"{what} works with SD1.5 checkpoints only (its released weights are SD1.5); "
                           f"'{checkpoint_name(sd_model)}' is {describe(sd_model)}. Load an SD1.5 checkpoint"
                           + (", or use the AnimateDiff mode, which runs on SDXL with an SDXL motion module"
                              if family(sd_model) == SDXL else ""))


def sdxl_pooled_width(sd_model) -> int:
    """Columns of SDXL's ``vector`` conditioning that hold the pooled text embedding.

    The vector's width is the UNet's ``adm_in_channels`` (the input of ``label_emb``).
    The conditioner concatenates the embedders' vector outputs in order: the text encoders' pooled
    embedding first, then one ``ConcatTimestepEmbedderND`` per size/crop input (``outdim`` columns
    per input column). What is left after the size/crop part is the pooled part.
    """
    try:
        vector_width = int(sd_model.model.diffusion_model.label_emb[0][0].in_features)
    except (AttributeError, IndexError, TypeError) as e:
        raise RequestError(f"prompt travel: the UNet of '{checkpoint_name(sd_model)}' has no SDXL vector input") from e
    size_width = 0
    for embedder in _embedders(sd_model):
        key = getattr(embedder, "input_key", None)
        if key in (None, "txt"):
            continue
        if key not in SDXL_SIZE_INPUT_COLUMNS or not hasattr(embedder, "outdim"):
            raise RequestError(f"prompt travel does not know the SDXL conditioning input '{key}' of "
                               f"'{checkpoint_name(sd_model)}'; use one prompt for the whole video")
        size_width += SDXL_SIZE_INPUT_COLUMNS[key] * int(embedder.outdim)
    pooled = vector_width - size_width
    if pooled <= 0:
        raise RequestError(f"prompt travel: the SDXL conditioning of '{checkpoint_name(sd_model)}' has no pooled text "
                           f"part ({vector_width} columns, {size_width} of size/crop embeddings)")
    return pooled
