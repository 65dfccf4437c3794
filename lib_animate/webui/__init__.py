"""Adapters to the AUTOMATIC1111 webui: the only package that imports ``modules.*``.

``args`` and ``compat_animatediff`` are plain Python (tested in CI); the other modules run
inside the webui process.
"""
