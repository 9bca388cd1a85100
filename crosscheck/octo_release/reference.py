"""The upstream half of the release-layout cross-check (runs in .venv-crosscheck/octo).

Given WORK_DIR from write.py, checks with the upstream sources in $ORACLES/octo:

1. ``OctoModule.create(**config["model"])`` builds from the release's config.json (the language
   encoder name replaced by WORK_DIR/t5, the tiny T5's config, since there is no hub here);
2. the parameter tree ``module.init`` makes from example_batch.msgpack (as ``load_pretrained``:
   ``jax.eval_shape``) has exactly the release's orbax tree: the same paths and shapes, float32;
3. the checkpoint restores through upstream's own call (``CheckpointManager(path,
   PyTreeCheckpointer()).restore(step, params_shape)``) and the transformer and action head run on the
   restored weights with the example batch;
4. our config.json for octo-small-1.5's settings equals upstream's ``get_config("vit_s")`` of
   scripts/configs/octo_pretrain_config.py (``to_dict()``, as train.py saves it), key for key and
   value for value.

Writes the result file (crosscheck/render.py's schema). Usage: reference.py WORK_DIR RESULT_JSON
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import types
from importlib import metadata
from pathlib import Path

import numpy as np

ORACLES = Path(os.environ.get("ORACLES", Path(__file__).resolve().parents[3] / "shared" / "oracles"))
sys.path.insert(0, str(ORACLES / "octo"))

import jax  # noqa: E402

# Drift shims (see $ORACLES/README.md): names the 2024 code uses that current jax dropped, and
# jnp.clip's a_min/a_max keywords (now min/max), which transformers' FlaxT5 passes.
jax.random.KeyArray = jax.Array
jax.tree_map = jax.tree_util.tree_map
_jnp_clip = jax.numpy.clip


def _clip(x, min=None, max=None, *, a_min=None, a_max=None, **kwargs):  # noqa: A002
    return _jnp_clip(x, a_min if a_min is not None else min, a_max if a_max is not None else max, **kwargs)


jax.numpy.clip = _clip

import flax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from octo.model.octo_module import OctoModule  # noqa: E402

UPSTREAM = {
    "repo": "octo-models/octo",
    "commit": (ORACLES / "octo" / "SOURCE").read_text().split("@")[1].strip(),
}


def flatten(tree, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            out.update(flatten(value, path))
        else:
            out[path] = (tuple(int(n) for n in value.shape), str(value.dtype))
    return out


def stub_modules() -> None:
    """What octo_pretrain_config.py imports from files not in the oracle (octo.data, train_utils): the
    names only (ModuleSpec.create records module and name, so the config is the same)."""

    def module(name: str, **attrs) -> None:
        mod = types.ModuleType(name)
        for attr, value in attrs.items():
            value.__module__ = name
            setattr(mod, attr, value)
        sys.modules[name] = mod

    for package in ("octo.data", "octo.data.utils"):
        sys.modules.setdefault(package, types.ModuleType(package))
    module("octo.data.utils.text_processing", HFTokenizer=type("HFTokenizer", (), {}),
           MuseEmbedding=type("MuseEmbedding", (), {}))  # fmt: skip

    def hf_weights_loader():  # noqa: ANN202 - a name for ModuleSpec only
        return None

    module("octo.utils.train_utils", hf_weights_loader=hf_weights_loader)


def upstream_small_config() -> dict:
    stub_modules()
    import importlib.util

    path = ORACLES / "octo" / "scripts" / "configs" / "octo_pretrain_config.py"
    spec = importlib.util.spec_from_file_location("octo_pretrain_config", path)
    config_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config_module)
    config = config_module.get_config("vit_s").to_dict()
    return json.loads(json.dumps(config))  # tuples -> lists, as json.dump in save_pretrained


def diff_json(ours, theirs, path: str = "") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"{path}/{k}: only ours" for k in sorted(set(ours) - set(theirs))]
        out += [f"{path}/{k}: only upstream" for k in sorted(set(theirs) - set(ours))]
        for key in sorted(set(ours) & set(theirs)):
            out += diff_json(ours[key], theirs[key], f"{path}/{key}")
        return out
    return [] if ours == theirs else [f"{path}: ours {ours!r}, upstream {theirs!r}"]


def main(work: Path, result_path: Path) -> int:
    release = work / "release"
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"[crosscheck/octo_release] {'pass' if ok else 'FAIL'}: {name}: {detail}")

    config = json.loads((release / "config.json").read_text())
    model_config = json.loads(json.dumps(config["model"]))
    model_config["task_tokenizers"]["language"]["kwargs"]["encoder"] = str((work / "t5").resolve())
    module = OctoModule.create(**model_config)
    example = flax.serialization.msgpack_restore((release / "example_batch.msgpack").read_bytes())
    init_args = (example["observation"], example["task"], example["observation"]["timestep_pad_mask"])
    params_shape = jax.eval_shape(
        lambda rng: module.init(rng, *init_args, train=False), jax.random.PRNGKey(0)
    )["params"]
    expected = flatten(params_shape)
    steps = sorted(int(p.name) for p in release.iterdir() if p.name.isdigit())
    raw = ocp.PyTreeCheckpointer().restore(str((release / str(steps[-1]) / "default").resolve()))
    ours = flatten(raw)
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    check(
        "parameter tree: paths",
        not missing and not extra,
        f"{len(expected)} leaves upstream builds, {len(ours)} in the release; "
        f"missing {missing[:4]}, extra {extra[:4]}",
    )
    shapes = [p for p in set(expected) & set(ours) if expected[p][0] != ours[p][0]]
    dtypes = sorted({d for _, d in ours.values()})
    check(
        "parameter tree: shapes and dtype",
        not shapes and dtypes == ["float32"],
        f"{len(shapes)} shape mismatches {sorted(shapes)[:4]}; dtypes {dtypes}",
    )
    try:  # upstream's own restore call (OctoModel.load_pretrained)
        manager = ocp.CheckpointManager(str(release.resolve()), ocp.PyTreeCheckpointer())
        params = manager.restore(manager.latest_step(), params_shape)
        how = f"CheckpointManager(..., PyTreeCheckpointer()).restore({manager.latest_step()}, params_shape)"
    except Exception as exc:  # noqa: BLE001 - the legacy API may be gone from this orbax; say so
        params = ocp.PyTreeCheckpointer().restore(
            str((release / str(steps[-1]) / "default").resolve()), item=params_shape
        )
        how = "PyTreeCheckpointer().restore(item=params_shape) "
        how += f"(legacy CheckpointManager: {type(exc).__name__})"
    outputs = module.apply({"params": params}, *init_args, train=False, method="octo_transformer")
    head = module.bind({"params": params}).heads["action"]
    actions = head.predict_action(outputs, rng=jax.random.PRNGKey(0), train=False)
    readout = np.asarray(outputs["readout_action"].tokens)
    check(
        "upstream restores and runs the release",
        np.all(np.isfinite(readout)) and np.all(np.isfinite(np.asarray(actions))),
        f"{how}; readout {list(readout.shape)}, actions {list(np.asarray(actions).shape)}, finite",
    )
    ours_small = json.loads((work / "small_config.json").read_text())
    differences = diff_json(ours_small, upstream_small_config())
    check(
        "config.json at octo-small-1.5's settings == upstream get_config('vit_s').to_dict()",
        not differences,
        f"{len(differences)} differences"
        + (f": {differences[:6]}" if differences else " (every key and value)"),
    )
    result = {
        "model": "octo_release",
        "title": "Octo release layout (synthetic release vs upstream OctoModule / load_pretrained)",
        "upstream": UPSTREAM,
        "reference_env": {
            name: metadata.version(name) for name in ("jax", "flax", "orbax-checkpoint", "transformers")
        },
        "setup": (
            "vla_policy.backends.octo.synthetic_release writes a tiny Octo 1.5 (2 layers, width 32, "
            "64x64 primary and 32x32 wrist camera, repeated task tokens, tiny T5) in the official layout; "
            "upstream builds OctoModule from its config.json (the T5 name pointed at a local config of "
            "the same dimensions) and example_batch.msgpack and restores its orbax checkpoint."
        ),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()} CPU",
        "quantities": [],
        "checks": checks,
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
