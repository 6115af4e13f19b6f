"""Training: the Trainer and its state, data sets, checkpoints, run folders, one process or
several, saved weights at work."""
