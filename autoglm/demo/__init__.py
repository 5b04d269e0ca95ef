"""`autoglm demo`: the main job end to end, as stages (train -> export -> serve -> ask …).

Each stage is a function ``run_stage_<name>(console, …)`` in its own module; stages import the
wings they need inside their body (the CLI floor rule).
"""
