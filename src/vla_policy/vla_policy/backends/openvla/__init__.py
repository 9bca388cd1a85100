"""OpenVLA (Prismatic DINOv2 + SigLIP + Llama 2) as a native policy backend.

Modules: configuration (shapes, config.json), modeling (the network), key_map (official checkpoint
names), processing (prompt, pixels, action tokens), loading (checkpoint I/O), backend (the factory),
remote (the opt-in hub-code path). Importing this package imports neither torch nor transformers.
"""
