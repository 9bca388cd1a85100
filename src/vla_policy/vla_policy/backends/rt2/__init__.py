"""RT-2-style backend: a vision-language model answering "terminate dx dy dz droll dpitch dyaw gripper".

Modules, from the parts to the whole: ``action_text`` (parse the 8 integers), ``binning`` (bins to
Bridge actions and the matching ActionSpace), ``config`` (rt2_config.json), ``grammar`` (constrained
decoding), ``random_model`` (random-weight PaliGemma for tests and benchmarks), ``backend`` (loading
and inference). Nothing heavy is imported here.
"""
