"""The scripted expert backend: privileged sim state in, Bridge end-effector deltas out."""

from vla_policy.backends.scripted.backend import ScriptedBackend

__all__ = ["ScriptedBackend"]
