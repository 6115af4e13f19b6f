"""The compiler: a checked spec becomes an nn.Module tree (imports torch)."""
