"""Running a checkpoint: preprocessing, batched forward passes, probabilities."""
