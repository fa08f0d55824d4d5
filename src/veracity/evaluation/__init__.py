"""Evaluating a checkpoint as a user meets it: verdicts, abstentions, calibration, by size
and JPEG quality, plus natural photographs it never trained on (``veracity evaluate``)."""
