"""specnet: declarative PyTorch networks."""
