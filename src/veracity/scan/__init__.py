"""Archive scans: ``veracity scan`` judges every image and video of a folder or a manifest
with the serving core in-process, writing one JSON line per file, resumable.

- inputs.py: what is scanned (a folder walked in order, a manifest of paths, one file).
- results.py: the JSONL output, read back on resume (what is done, by content digest).
- runner.py: the scan itself: bounded work in flight through a ModelService, per-file
  errors recorded, a summary at the end.
"""
