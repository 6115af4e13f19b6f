"""specnet lsp: a language server for spec files (torch-free)."""
