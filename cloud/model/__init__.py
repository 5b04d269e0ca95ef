"""The encoder + plug-and-play adapters + task heads (PyTorch).

Public names:
- :class:`~cloud.model.encoder.BertEncoder` — a BERT-family encoder that loads a local Hugging
  Face directory (config.json + model.safetensors) with the same parameter names as HF.
- :class:`~cloud.model.adapters.BottleneckAdapter` / :class:`~cloud.model.adapters.AdapterSet`.
- :class:`~cloud.model.autoglm_model.AutoGLMModel` — encoder + named adapter sets + heads.
- :mod:`cloud.model.base` — locating the default base, tiny test configs, weight hashes.
- :mod:`cloud.model.checkpoint` — save/load of trained adapter sets.
"""

from cloud.model.adapters import AdapterSet, BottleneckAdapter
from cloud.model.autoglm_model import AutoGLMModel, ModelOutput
from cloud.model.encoder import BertConfig, BertEncoder

__all__ = ["AdapterSet", "AutoGLMModel", "BertConfig", "BertEncoder", "BottleneckAdapter", "ModelOutput"]
