"""The document collection the project ships (procedures, troubleshooting, safety, definitions)."""
