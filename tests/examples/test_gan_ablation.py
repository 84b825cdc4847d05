"""The ablation's generators (shapes, parameter parity, CLADE), the wash-away probe and the ablation report."""

from __future__ import annotations

import json

import pytest
import torch
from spade_gan.ablation.runs import markdown_table, summarise
from spade_gan.ablation.washaway import uniform_label_maps, washaway_probe
from spade_gan.models.baselines import Pix2PixHDGenerator, matched_width, parameter_count
from spade_gan.models.generator import SPADEGenerator
from spade_gan.models.layers import init_weights
from spade_gan.models.spec import GENERATORS, ModelSpec
from torch import nn

from spadenorm import CLADE, SPADE


def _spec(**fields) -> ModelSpec:
    base = {"label_nc": 8, "contain_dontcare": False, "use_instance": False, "ngf": 4, "crop_size": 64}
    return ModelSpec(**{**base, **fields})


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("norm", ["instance", "sync_batch"])
def test_every_ablation_generator_maps_labels_to_images_of_the_output_size(generator, norm):
    torch.manual_seed(0)
    g = _spec(generator=generator, norm=norm, aspect_ratio=2.0).build_generator().eval()
    assert g.output_size == (32, 64)
    out = g(torch.randint(0, 8, (2, 32, 64)))
    assert out.shape == (2, 3, 32, 64)
    assert out.abs().max() <= 1
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 8, (2, 32, 64)), 8).movedim(-1, 1).float()
    assert g(one_hot).shape == (2, 3, 32, 64)


@pytest.mark.parametrize(("ngf", "crop_size", "upsampling"), [(16, 64, "normal"), (4, 64, "normal"), (8, 256, "more")])
@pytest.mark.parametrize("generator", ["pix2pixhd", "concat"])
def test_baselines_have_the_spade_generators_parameter_count_within_10_percent(ngf, crop_size, upsampling, generator):
    spec = _spec(ngf=ngf, crop_size=crop_size, num_upsampling_layers=upsampling, generator=generator)
    with torch.device("meta"):
        spade = parameter_count(spec.spade_generator())
        baseline = parameter_count(spec.build_generator())
    assert abs(baseline - spade) / spade < 0.10


def test_baseline_structure_input_only_versus_concat():
    plain = Pix2PixHDGenerator(5, ngf=4, n_blocks=2, crop_size=32)
    concat = Pix2PixHDGenerator(5, ngf=4, n_blocks=2, crop_size=32, concat_mask=True)
    # only the stem sees the map in the plain generator; every block and up layer sees it in the concat one
    assert plain.stem[1].in_channels == 5
    assert plain.blocks[0].body[1].in_channels == 32
    assert concat.blocks[0].body[1].in_channels == 32 + 5
    assert [layer.body[0].in_channels for layer in concat.up] == [32 + 5, 16 + 5, 8 + 5]
    assert isinstance(plain.stem[2], nn.InstanceNorm2d)
    assert isinstance(Pix2PixHDGenerator(5, ngf=4, crop_size=32, norm="batch").stem[2], nn.BatchNorm2d)


def test_baseline_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 2\\*\\*n_downsampling = 8"):
        Pix2PixHDGenerator(5, crop_size=36)
    with pytest.raises(ValueError, match="norm must be 'instance' or 'batch'"):
        Pix2PixHDGenerator(5, crop_size=32, norm="group")
    with pytest.raises(ValueError, match="z: the pix2pixHD generators have no style input"):
        Pix2PixHDGenerator(5, ngf=2, n_blocks=1, crop_size=32)(
            torch.zeros(1, 32, 32, dtype=torch.long), torch.zeros(1, 4)
        )
    with pytest.raises(ValueError, match="cannot be trained with use_vae"):
        _spec(generator="pix2pixhd", use_vae=True)
    with pytest.raises(ValueError, match="cannot use instance edges"):
        _spec(generator="clade", use_instance=True)
    with pytest.raises(ValueError, match="generator must be one of"):
        _spec(generator="unet")


def test_matched_width_picks_the_closest_count():
    # Linear(w, w) has w*w + w parameters: 110 at w = 10, 132 at w = 11
    assert matched_width(lambda w: nn.Linear(w, w), target=120) == 10
    assert matched_width(lambda w: nn.Linear(w, w), target=125) == 11
    assert matched_width(lambda w: nn.Linear(w, w), target=1) == 1


def test_clade_generator_swaps_every_spade_layer_for_a_class_table():
    g = _spec(generator="clade").build_generator()
    assert isinstance(g, SPADEGenerator)
    assert g.modulation == "clade"
    norms = [m for m in g.modules() if isinstance(m, (SPADE, CLADE))]
    assert norms
    assert all(isinstance(m, CLADE) for m in norms)
    spade = _spec().build_generator()
    assert parameter_count(g) < parameter_count(spade) / 2  # no per-layer convolution networks


def test_clade_layers_get_the_class_ids_of_the_semantic_map():
    torch.manual_seed(0)
    g = _spec(generator="clade", norm="instance", contain_dontcare=True).build_generator().eval()
    seen = []
    g.up_3.norm_1.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    ids = torch.randint(0, 9, (2, 64, 64))  # 8 classes + the dontcare channel
    g(ids)
    assert torch.equal(seen[0], ids)
    g(torch.nn.functional.one_hot(ids, 9).movedim(-1, 1).float())
    assert torch.equal(seen[1], ids)


def test_uniform_label_maps():
    maps = uniform_label_maps(3, (2, 4))
    assert maps.shape == (3, 2, 4)
    assert all(bool((maps[k] == k).all()) for k in range(3))


def _toy_input_only(label_nc: int) -> nn.Module:
    """conv (reflection padded) -> instance norm -> conv: the label map only at the input."""

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(label_nc, 8, 3), nn.InstanceNorm2d(8), nn.Conv2d(8, 3, 1), nn.Tanh()
            )

        def forward(self, seg):
            return self.body(seg)

    return Toy()


def test_washaway_probe_separates_an_input_only_instance_norm_network_from_spade():
    torch.manual_seed(0)
    washed, _, images = washaway_probe(
        _toy_input_only(8), label_nc=8, contain_dontcare=False, size=(16, 16), alignment=False
    )
    assert washed["pairwise_l1"] < 1e-3  # instance norm removed the spatially constant input
    spade = SPADEGenerator(8, ngf=2, crop_size=64, norm="instance").apply(lambda m: init_weights(m, gain=1.0))
    kept, labels, images = washaway_probe(spade, label_nc=8, contain_dontcare=False, size=(64, 64), alignment=True)
    assert kept["pairwise_l1"] > 100 * washed["pairwise_l1"]
    assert kept["pairwise_l1_min"] > 0
    assert images.shape == (8, 3, 64, 64)
    assert labels.shape == (8, 64, 64)
    assert {"accuracy", "miou"} <= set(kept)
    assert spade.training  # the probe restores the mode


def test_an_ablation_run_is_not_reused_with_other_training_arguments(tmp_path):
    from spade_gan.ablation.runs import RESULT_FILE, run_one

    run = tmp_path / "spade" / "seed0"
    run.mkdir(parents=True)
    (run / RESULT_FILE).write_text(json.dumps({"generator": "spade", "seed": 0, "train_args": ["--max-steps", "5"]}))
    assert run_one(tmp_path, "spade", 0, ["--max-steps", "5"])["train_args"] == ["--max-steps", "5"]
    with pytest.raises(ValueError, match=r"was trained with the arguments \['--max-steps', '5'\]"):
        run_one(tmp_path, "spade", 0, ["--max-steps", "6"])


def test_ablation_summary_and_table():
    def run(generator, seed, acc, l1):
        return {
            "generator": generator,
            "seed": seed,
            "accuracy": acc,
            "miou": acc / 2,
            "parameters": 1_000_000,
            "step_time_s": 0.5,
            "washaway": {"pairwise_l1": l1, "pairwise_l1_min": l1, "accuracy": 0.125},
        }

    rows = summarise([run("spade", 0, 0.9, 0.4), run("spade", 1, 0.8, 0.2), run("pix2pixhd", 0, 0.5, 0.0)])
    assert [r["generator"] for r in rows] == ["spade", "pix2pixhd"]
    assert rows[0]["accuracy"] == pytest.approx({"mean": 0.85, "min": 0.8, "max": 0.9})
    assert "fid" not in rows[0]
    table = markdown_table(rows)
    assert "| spade | 1.00 M | 2 | 0.850 (0.800-0.900) |" in table
    assert "FID" not in table.splitlines()[0]
    json.dumps(rows)  # the report is plain JSON
