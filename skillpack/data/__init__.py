"""Data files shipped with the skill pack (climate normals, knowledge graph)."""
