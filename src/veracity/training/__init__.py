"""Training: dataset scanning, the training loop, resumable state and metrics."""
