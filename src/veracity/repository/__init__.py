"""Model lifecycle: the on-disk model repository, the registry of loaded versions, and how
traffic is split between a model's serving, canary and shadow versions."""
