"""The serving core: what an HTTP request, a job and a V2 call share, below the HTTP layer.

The model service (the one way in), admission, the registry of loaded versions and the
traffic between them, each version's runner and micro-batcher, and judging and recording
an upload. Dependencies run one way: service -> registry -> runner -> batcher.
"""
