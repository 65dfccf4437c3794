"""Adapters to the AUTOMATIC1111 webui: the only package that imports ``modules.*``.

``api`` (the request contract) is plain Python, tested in CI without a webui; ``jobs``,
``controlnet`` and ``ui`` run inside the webui process (their webui-free parts are unit-tested too).
"""
