"""Sampling-side math: pure PyTorch, no webui imports.

    layout         FrameLayout: which rows of a UNet call are which frames (CFG chunks)
    context        context windows for long videos and weighted fusion of window outputs
    prompt_travel  "N: prompt" keyframes, per-frame interpolation plan, slerp/lerp of conds
    schedules      beta schedules, zero-terminal-SNR rescaling, alphas_cumprod presets
    aa_ddim        the exact Animate Anyone sampler (trailing DDIM, v-prediction, zero SNR)
    img2vid        init-image / last-image latent blend weights for AnimateDiff img2img
"""
