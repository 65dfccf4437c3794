"""One video job's lifecycle inside the webui's processing, per mode, and what it loads, hooks and writes."""
