"""The HTTP routes, one module per noun, each with its module-level ``router``."""
