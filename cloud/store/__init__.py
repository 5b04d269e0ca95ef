"""Content-addressed file store for bundle files."""
