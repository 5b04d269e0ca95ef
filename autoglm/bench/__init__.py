"""Benchmark records: what each benchmark writes and how the README / docs tables are rendered."""
