"""'Seen before': perceptual hashes of judged images, and the near-duplicates of a new one."""
