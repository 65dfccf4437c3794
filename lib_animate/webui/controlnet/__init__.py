"""Per-frame inputs for sd-webui-controlnet's units, and the per-call hint rows of a video job."""
