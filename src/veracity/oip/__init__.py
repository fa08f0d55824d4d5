"""The Open Inference Protocol (V2, REST): the wire format its clients speak.

codec.py turns a V2 request body (JSON, or a JSON header followed by binary tensor data)
into the images it carries, and the verdicts into a V2 response; api/v2.py serves the
routes. Nothing here knows HTTP or the model.
"""
