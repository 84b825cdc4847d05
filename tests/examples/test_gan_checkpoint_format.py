"""``train_spade.py`` checkpoints of the ``spadenorm-gan-v1`` format load, for synthesis and for ``--resume``, whatever
modules of the examples wrote them.

A checkpoint holds tensors, plain containers and plain values only (``torch.load(weights_only=True)`` reads it), so
what loads it is its layout: the globals its pickle names, and its keys, values and tensor shapes.
``checkpoint_v1_layout.json`` records that layout for a checkpoint written at commit d706576, whose modules sat at the
top of ``examples/spade_gan`` (the command is its ``written_by``); the tensors' values are left out, which keeps the
file at 68 KB instead of 2 MB. The tests rebuild that checkpoint with random values, load it, resume training from
it, and compare the checkpoint this code writes with the record.
"""

from __future__ import annotations

import dataclasses
import json
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from spade_gan.models.spec import ModelSpec
from spade_gan.synthesis.loading import load_model
from spade_gan.training.checkpoints import FORMAT, capture_rng_state, load_checkpoint
from spade_gan.training.config import ARCHITECTURE_KEYS, MODEL_KEYS, TrainConfig

RECORD = json.loads(Path(__file__).with_name("checkpoint_v1_layout.json").read_text())
CONTAINERS = {"dict": dict, "OrderedDict": OrderedDict, "list": list, "tuple": tuple}


def layout(obj: Any) -> Any:
    """``obj`` with each tensor replaced by its dtype and shape and each container by ``{type name: items}`` (the
    encoding of the record)."""
    if isinstance(obj, torch.Tensor):
        return {"tensor": str(obj.dtype).removeprefix("torch."), "shape": list(obj.shape)}
    if isinstance(obj, dict):
        return {type(obj).__name__: [[k, layout(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [layout(v) for v in obj]}
    return obj


def structure(node: Any) -> Any:
    """A layout with the plain values left out: containers, keys, tensor dtypes and shapes."""
    if isinstance(node, dict) and "tensor" in node:
        return node
    if isinstance(node, dict):
        ((kind, items),) = node.items()
        if kind in ("dict", "OrderedDict"):
            return {kind: [[k, structure(v)] for k, v in items]}
        return {kind: [structure(v) for v in items]}
    return "value"


def rebuild(node: Any, generator: torch.Generator) -> Any:
    """A checkpoint of the recorded layout: small positive floats (valid Adam moments and running variances), ones for
    integer tensors."""
    if isinstance(node, dict) and "tensor" in node:
        dtype = getattr(torch, node["tensor"])
        if dtype.is_floating_point:
            return torch.rand(node["shape"], generator=generator, dtype=dtype) * 0.01
        return torch.ones(node["shape"], dtype=dtype)
    if isinstance(node, dict):
        ((kind, items),) = node.items()
        if kind in ("dict", "OrderedDict"):
            return CONTAINERS[kind]((k, rebuild(v, generator)) for k, v in items)
        return CONTAINERS[kind](rebuild(v, generator) for v in items)
    return node


def recorded_checkpoint() -> dict[str, Any]:
    """The recorded checkpoint, rebuilt; its RNG states are this process's (random bytes are not a valid mt19937 state),
    checked to have the recorded layout."""
    state = rebuild(RECORD["checkpoint"], torch.Generator().manual_seed(0))
    rng = [capture_rng_state()]
    assert structure(layout(rng)) == structure(layout(state["rng"]))
    state["rng"] = rng
    return state


def pickle_globals(path: Path) -> set[str]:
    """The ``module name`` of every global a ``torch.save`` file's pickle refers to."""
    with zipfile.ZipFile(path) as archive:
        data = next(name for name in archive.namelist() if name.endswith("/data.pkl"))
        return {arg for op, arg, _ in pickletools.genops(archive.read(data)) if op.name == "GLOBAL"}


def only_torch_and_containers(names: set[str]) -> bool:
    return all(name == "collections OrderedDict" or name.split(".")[0].split(" ")[0] == "torch" for name in names)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose ``latest.pt`` is the recorded checkpoint (step 2), trained on to step 3 with ``--resume``
    and no architecture flags: the checkpoint's configuration fixes them, ``--spade-hidden 4`` included."""
    import train_spade

    out = tmp_path_factory.mktemp("resume")
    (out / "checkpoints").mkdir()
    torch.save(recorded_checkpoint(), out / "checkpoints" / "latest.pt")
    assert train_spade.main(["--out", str(out), "--resume", "--max-steps", "3", "--eval-images", "2"]) == 0
    return out


def test_the_record_pickles_no_class_of_the_examples():
    assert RECORD["checkpoint"]["dict"][0] == ["format", FORMAT]
    assert only_torch_and_containers(set(RECORD["pickle_globals"]))


def test_recorded_checkpoint_loads_for_synthesis(tmp_path: Path):
    path = tmp_path / "latest.pt"
    state = recorded_checkpoint()
    torch.save(state, path)
    assert load_checkpoint(path)["step"] == 2
    model = load_model(path)
    config = dict(RECORD["checkpoint"]["dict"])["config"]
    config = dict(config["dict"])
    assert model.spec == ModelSpec(**{name: config[name] for name in MODEL_KEYS})
    assert model.spec.spade_hidden == 4
    assert model.encoder is not None
    for name, tensor in model.generator.state_dict().items():  # the averaged weights, G_ema
        torch.testing.assert_close(tensor, state["G_ema"][name], rtol=0, atol=0)


def test_recorded_checkpoint_resumes(resumed: Path):
    state = load_checkpoint(resumed / "checkpoints" / "latest.pt")
    assert state["step"] == 3
    assert state["config"]["spade_hidden"] == 4
    assert load_model(resumed / "checkpoints" / "latest.pt").spec.spade_hidden == 4


def test_checkpoint_written_now_has_the_recorded_layout(resumed: Path):
    path = resumed / "checkpoints" / "latest.pt"
    assert only_torch_and_containers(pickle_globals(path))
    written = dict(layout(torch.load(path, weights_only=True))["dict"])
    recorded = dict(RECORD["checkpoint"]["dict"])
    assert list(written) == list(recorded)
    for key in ("G", "D", "E", "G_ema", "rng"):
        assert structure(written[key]) == structure(recorded[key]), key
    for key in ("opt_G", "opt_D"):  # the per-parameter state; param_groups' keys vary with the torch version
        assert structure(dict(written[key]["dict"])["state"]) == structure(dict(recorded[key]["dict"])["state"]), key
    assert [k for k, _ in written["config"]["dict"]] == [k for k, _ in recorded["config"]["dict"]]


def test_architecture_keys_are_the_specs_fields():
    spec_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    assert set(MODEL_KEYS) == spec_fields - {"spectral"}  # spectral is not a flag: the spec's default
    assert set(MODEL_KEYS) <= set(ARCHITECTURE_KEYS)
    assert {"ndf", "num_d", "n_layers_d", "dataset"} <= set(ARCHITECTURE_KEYS)
    cfg = TrainConfig(
        label_nc=5, contain_dontcare=True, use_instance=False, crop_size=128, aspect_ratio=2.0, ngf=8, z_dim=16
    )
    cfg.num_upsampling_layers, cfg.spade_hidden, cfg.norm, cfg.use_vae = "more", 32, "instance", True
    spec = cfg.model_spec()
    assert {name: getattr(spec, name) for name in MODEL_KEYS} == {name: getattr(cfg, name) for name in MODEL_KEYS}
