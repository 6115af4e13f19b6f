"""From an ``nn.Module`` to a spec: ``specnet.from_module`` and ``specnet import``."""
