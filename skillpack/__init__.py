"""The default skill pack shared by edge and cloud: safe calculator, unit conversion, climate
normals, plant knowledge graph and document collection. Pure Python + numpy; no torch."""
