"""A model at rest: the on-disk model repository (versions, their checkpoints and config)."""
