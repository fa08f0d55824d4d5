"""veracity: tells whether an image or video frame is real or manipulated."""

__version__ = "0.1.0"
