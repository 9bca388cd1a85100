import numpy as np
import pytest

from vla_common.action_space import ActionSpace
from vla_policy.contract import PolicyOutput, available_backends, make_backend, validate_output


def test_registry_lists_and_rejects_unknown():
    assert "scripted" in available_backends()
    with pytest.raises(ValueError, match="'nope' is unknown; available: .*scripted"):
        make_backend("nope")


def test_validate_output_shapes_and_values():
    space = ActionSpace()
    assert validate_output(PolicyOutput(np.zeros(7)), space).shape == (1, 7)
    with pytest.raises(ValueError, match="horizon x 7"):
        validate_output(PolicyOutput(np.zeros((2, 6))), space)
    with pytest.raises(ValueError, match="non-finite"):
        validate_output(PolicyOutput(np.full((1, 7), np.inf)), space)
    discrete = ActionSpace(kind="discrete")
    with pytest.raises(ValueError, match="dtype"):
        validate_output(PolicyOutput(np.zeros((1, 7))), discrete)
    with pytest.raises(ValueError, match="bin index"):
        validate_output(PolicyOutput(np.full((1, 7), 256)), discrete)


def test_backend_by_import_path():
    backend = make_backend(
        "vla_policy.backends.scripted.backend:make_scripted_backend", action_kind="discrete"
    )
    assert backend.name == "scripted" and backend.action_space.kind == "discrete"
    with pytest.raises(ValueError, match="cannot import it"):
        make_backend("no_such_package.module:factory")
