"""The request contract: the args' fields and validation, sd-webui-animatediff's payload, the infotext entry."""
