"""Video: frame sampling (PyAV/FFmpeg), per-video verdicts from per-frame ones, timelines.

``sampling`` opens untrusted video bytes under limits and yields the sampled frames one at
a time; ``aggregate`` turns per-frame verdicts into one video verdict and a timeline of
suspicious segments; ``samples`` writes synthetic sample videos for tests and demos.
"""
