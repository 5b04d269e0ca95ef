"""Open-AutoGLM Edge: the ``autoglm`` command line (top floor).

The CLI imports a wing (``cloud``/``edge``/``export``) only inside the command that needs it,
so ``autoglm edge …`` never loads torch.
"""

__version__ = "0.1.0"
