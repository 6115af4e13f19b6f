"""Training: the Trainer, data sets, checkpoints, run folders, several processes."""
