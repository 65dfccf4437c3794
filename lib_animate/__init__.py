"""Video generation engine for the AUTOMATIC1111 webui extension "Animate Anyone".

The engine is plain PyTorch and works on any ldm ``UNetModel``; only ``lib_animate.webui``
touches the webui's ``modules.*``.

Subpackages:
    motion     AnimateDiff motion modules: formats, safe loading, injection, motion LoRA
    reference  Animate Anyone: ReferenceNet bank and attention hooks, pose guider, weights
    sampling   frame layout, context windows, prompt travel, noise schedules, samplers
    pose       pose sequences: skeleton videos, OpenPose JSON rendering, optional detectors
    video      encode / decode GIF, MP4, WebM, WebP, PNG frames
    webui      adapters to the webui (the only place that imports ``modules``)
"""

__version__ = "0.1.0"
