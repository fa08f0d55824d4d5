"""Provenance: the C2PA content credentials a file carries, read and validated beside the
model's verdict.

``worker`` runs the CAI's library (c2pa-python) in worker processes and boils a manifest
down to what an answer reports; ``reader`` owns those processes and bounds each read (time,
memory, queue); ``report`` is the answer's ``provenance`` field; ``verdict`` is how a
credential meets the model's verdict (README, "Provenance").
"""
