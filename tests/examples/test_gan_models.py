"""The reference GAN's networks: shapes, the original's layout (keys, shapes, parameter counts) and checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from spade_gan import models, synthesis
from spade_gan.models import (
    ConvEncoder,
    ModelSpec,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    SPADEGenerator,
    SPADEResnetBlock,
    init_weights,
    reparameterize,
)
from spade_gan.models.vgg import VGG19Features
from spade_gan.synthesis.original_weights import load_original_generator, spec_from_original
from spade_gan.synthesis.strict_loading import load_generator_weights
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import spadenorm

# The original configurations (the original release's per-dataset options): semantic_nc, crop, aspect ratio, upsampling.
ADE20K = {"label_nc": 151, "crop_size": 256, "aspect_ratio": 1.0, "num_upsampling_layers": "normal"}
COCO = {"label_nc": 184, "crop_size": 256, "aspect_ratio": 1.0, "num_upsampling_layers": "normal"}
CITYSCAPES = {"label_nc": 36, "crop_size": 512, "aspect_ratio": 2.0, "num_upsampling_layers": "more"}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def one_hot_seg(n: int, label_nc: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(0, label_nc, (n, h, w), generator=torch.Generator().manual_seed(seed))
    return F.one_hot(ids, label_nc).permute(0, 3, 1, 2).float()


def sigma(weight_orig: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Spectral norm estimate u^T W v with W the weight reshaped to (out, -1)."""
    return u @ weight_orig.reshape(weight_orig.shape[0], -1) @ v


# ---------------------------------------------------------------------------------------------------------------------
# Parameter counts and compute of the original configurations (built on the meta device: no memory, no init cost).


@pytest.mark.parametrize(
    ("config", "use_vae", "millions"),
    [(ADE20K, False, 96.49), (COCO, False, 97.48), (CITYSCAPES, False, 93.05), (CITYSCAPES, True, 101.14)],
    ids=["ade20k", "coco", "cityscapes", "cityscapes-vae"],
)
def test_generator_parameter_count_matches_original(config, use_vae, millions):
    with torch.device("meta"):
        generator = SPADEGenerator(**config, use_vae=use_vae)
    assert round(count(generator) / 1e6, 2) == millions


def test_cityscapes_vae_fc_is_linear_from_z_to_the_8x4_map():
    with torch.device("meta"):
        generator = SPADEGenerator(**CITYSCAPES, use_vae=True)
    # sw = 512 // 2**6 = 8, sh = round(8 / 2.0) = 4: Linear(256, 1024 * 4 * 8), 8.09M parameters more than the conv.
    assert generator.fc.weight.shape == (16 * 64 * 4 * 8, 256)
    assert generator.output_size == (256, 512)


def test_encoder_parameter_count_matches_original():
    with torch.device("meta"):
        encoder = ConvEncoder(crop_size=512)
    assert round(count(encoder) / 1e6, 2) == 10.46


@pytest.mark.parametrize(("semantic_nc", "millions"), [(36, 5.60), (151, 5.84), (184, 5.90)])
def test_discriminator_parameter_count_in_original_range(semantic_nc, millions):
    with torch.device("meta"):
        discriminator = MultiscaleDiscriminator(semantic_nc + 3)
    # Per scale: conv0 (semantic_nc + 3) * 64 * 16 + 64, then 64*128*16 + 128*256*16 + 256*512*16 (no biases:
    # instance norm follows), final 512 * 16 + 1.
    per_scale = (semantic_nc + 3) * 64 * 16 + 64 + (64 * 128 + 128 * 256 + 256 * 512) * 16 + 512 * 16 + 1
    assert count(discriminator) == 2 * per_scale
    assert round(count(discriminator) / 1e6, 2) == millions
    assert 5.6 <= millions <= 5.9


def test_cityscapes_generator_costs_about_281_gmacs():
    with torch.device("meta"):
        generator = SPADEGenerator(**CITYSCAPES).eval()
        seg = torch.zeros(1, 36, 256, 512)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = generator(seg)
    assert out.shape == (1, 3, 256, 512)
    assert round(counter.get_total_flops() / 2 / 1e9) == 281


# ---------------------------------------------------------------------------------------------------------------------
# The original's state-dict layout, written from the published facts independently of the implementation.


def original_generator_shapes(
    semantic_nc: int, ngf: int, *, vae: bool, z_dim: int = 256, sh: int = 0, sw: int = 0, most: bool = False
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the original ``latest_net_G.pth`` (spectral norm on, sync-batch SPADE 3x3)."""
    nf = ngf
    shapes: dict[str, tuple[int, ...]] = {}
    if vae:
        shapes["fc.weight"], shapes["fc.bias"] = (16 * nf * sh * sw, z_dim), (16 * nf * sh * sw,)
    else:
        shapes["fc.weight"], shapes["fc.bias"] = (16 * nf, semantic_nc, 3, 3), (16 * nf,)
    blocks = {
        "head_0": (16 * nf, 16 * nf),
        "G_middle_0": (16 * nf, 16 * nf),
        "G_middle_1": (16 * nf, 16 * nf),
        "up_0": (16 * nf, 8 * nf),
        "up_1": (8 * nf, 4 * nf),
        "up_2": (4 * nf, 2 * nf),
        "up_3": (2 * nf, nf),
    }
    if most:
        blocks["up_4"] = (nf, nf // 2)

    def spade(prefix: str, channels: int) -> None:
        for buffer in ("running_mean", "running_var"):
            shapes[f"{prefix}.param_free_norm.{buffer}"] = (channels,)
        shapes[f"{prefix}.param_free_norm.num_batches_tracked"] = ()
        shapes[f"{prefix}.mlp_shared.0.weight"], shapes[f"{prefix}.mlp_shared.0.bias"] = (
            (128, semantic_nc, 3, 3),
            (128,),
        )
        for name in ("mlp_gamma", "mlp_beta"):
            shapes[f"{prefix}.{name}.weight"], shapes[f"{prefix}.{name}.bias"] = (channels, 128, 3, 3), (channels,)

    def spectral_conv(prefix: str, cin: int, cout: int, k: int, bias: bool) -> None:
        shapes[f"{prefix}.weight_orig"] = (cout, cin, k, k)
        shapes[f"{prefix}.weight_u"], shapes[f"{prefix}.weight_v"] = (cout,), (cin * k * k,)
        if bias:
            shapes[f"{prefix}.bias"] = (cout,)

    for name, (fin, fout) in blocks.items():
        fmiddle = min(fin, fout)
        spectral_conv(f"{name}.conv_0", fin, fmiddle, 3, True)
        spectral_conv(f"{name}.conv_1", fmiddle, fout, 3, True)
        spade(f"{name}.norm_0", fin)
        spade(f"{name}.norm_1", fmiddle)
        if fin != fout:
            spectral_conv(f"{name}.conv_s", fin, fout, 1, False)
            spade(f"{name}.norm_s", fin)
    final_nc = nf // 2 if most else nf
    shapes["conv_img.weight"], shapes["conv_img.bias"] = (3, final_nc, 3, 3), (3,)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("weight_u", "weight_v")):
            state[key] = F.normalize(torch.randn(shape, generator=g), dim=0)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


@pytest.mark.parametrize(
    ("config", "use_vae", "geometry"),
    [
        (ADE20K, False, {"sh": 8, "sw": 8}),
        (COCO, False, {"sh": 8, "sw": 8}),
        (CITYSCAPES, False, {"sh": 4, "sw": 8}),
        (CITYSCAPES, True, {"sh": 4, "sw": 8}),
        ({**ADE20K, "num_upsampling_layers": "most"}, False, {"sh": 2, "sw": 2, "most": True}),
    ],
    ids=["ade20k", "coco", "cityscapes", "cityscapes-vae", "ade20k-most"],
)
def test_full_size_state_dict_layout_matches_original(config, use_vae, geometry):
    with torch.device("meta"):
        generator = SPADEGenerator(**config, use_vae=use_vae)
    expected = original_generator_shapes(config["label_nc"], 64, vae=use_vae, **geometry)
    actual = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert actual.keys() == expected.keys()
    assert actual == expected


@pytest.mark.parametrize("use_vae", [False, True], ids=["fc-conv", "fc-linear"])
def test_original_format_state_dict_loads_strictly_and_drives_the_output(use_vae):
    generator = SPADEGenerator(5, ngf=4, crop_size=64, use_vae=use_vae, z_dim=16)
    state = random_state(original_generator_shapes(5, 4, vae=use_vae, z_dim=16, sh=2, sw=2))
    load_original_generator(generator, state)
    loaded = generator.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    # Eval mode uses the loaded running statistics and spectral-norm vectors: the output is a function of the
    # checkpoint only, so two generators loaded from it agree.
    other = SPADEGenerator(5, ngf=4, crop_size=64, use_vae=use_vae, z_dim=16)
    other.load_state_dict(state, strict=True)
    seg = one_hot_seg(2, 5, 64, 64)
    z = torch.randn(2, 16) if use_vae else None
    with torch.no_grad():
        torch.testing.assert_close(generator.eval()(seg, z), other.eval()(seg, z), rtol=0, atol=0)


def test_spectral_norm_eval_weight_is_weight_orig_over_sigma_from_stored_u_v():
    generator = SPADEGenerator(5, ngf=4, crop_size=64)
    state = random_state(original_generator_shapes(5, 4, vae=False))
    load_original_generator(generator, state)
    generator.eval()
    with torch.no_grad():
        generator(one_hot_seg(1, 5, 64, 64))
    for name in ("head_0.conv_0", "up_0.conv_1", "up_1.conv_s"):
        w, u, v = (state[f"{name}.{s}"] for s in ("weight_orig", "weight_u", "weight_v"))
        conv = generator.get_submodule(name)
        torch.testing.assert_close(conv.weight, w / sigma(w, u, v))
        # Eval mode does no power iteration: the stored vectors are unchanged.
        assert torch.equal(conv.weight_u, u)
        assert torch.equal(conv.weight_v, v)


def test_save_load_round_trip_with_weights_only_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    generator = SPADEGenerator(5, ngf=4, crop_size=64)
    seg = one_hot_seg(2, 5, 64, 64)
    generator(seg)  # a training step's forward: running statistics and spectral-norm vectors move
    assert int(generator.head_0.norm_0.param_free_norm.num_batches_tracked) == 1
    path = tmp_path / "latest_net_G.pth"
    torch.save(generator.state_dict(), path)
    restored = load_original_generator(SPADEGenerator(5, ngf=4, crop_size=64), path)
    assert torch.equal(
        restored.head_0.norm_0.param_free_norm.running_mean, generator.head_0.norm_0.param_free_norm.running_mean
    )
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(seg), generator.eval()(seg), rtol=0, atol=0)
    # A DataParallel-style save (every key under "module.") loads too.
    torch.save({f"module.{k}": v for k, v in generator.state_dict().items()}, path)
    load_original_generator(SPADEGenerator(5, ngf=4, crop_size=64), path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_nc": 6}, "label_nc=5"),
        ({"label_nc": 5, "use_vae": True}, "use_vae=False"),
        ({"label_nc": 5, "ngf": 8}, "ngf=4"),
        ({"label_nc": 5, "spectral": False}, "spectral=True"),
        ({"label_nc": 5, "norm": "instance"}, "norm="),
        ({"label_nc": 5, "num_upsampling_layers": "most", "crop_size": 128}, "num_upsampling_layers"),
        ({"label_nc": 5, "spade_hidden": 32}, "checkpoint has spade_hidden=128, generator has spade_hidden=32"),
    ],
)
def test_loading_a_mismatched_checkpoint_names_the_argument_to_change(kwargs, message):
    state = random_state(original_generator_shapes(5, 4, vae=False))
    generator = SPADEGenerator(**{"ngf": 4, "crop_size": 64, **kwargs})
    with pytest.raises(ValueError, match=message):
        load_original_generator(generator, state)


def test_vae_checkpoint_into_a_mask_generator_says_use_vae():
    state = random_state(original_generator_shapes(5, 4, vae=True, z_dim=16, sh=2, sw=2))
    with pytest.raises(ValueError, match="use_vae=True"):
        load_original_generator(SPADEGenerator(5, ngf=4, crop_size=64), state)


def test_model_spec_builds_the_generator_and_encoder_it_describes():
    spec = ModelSpec(
        label_nc=35,
        contain_dontcare=False,
        use_instance=True,
        ngf=2,
        num_upsampling_layers="more",
        crop_size=128,
        aspect_ratio=2.0,
        use_vae=True,
        z_dim=8,
        norm="instance",
    )
    generator, encoder = spec.build_generator(), spec.build_encoder()
    assert spec.semantic_nc == generator.label_nc == 36
    assert generator.output_size == (64, 128)
    assert generator.use_vae
    assert generator.z_dim == encoder.z_dim == 8
    assert "head_0.norm_0.param_free_norm.running_mean" not in generator.state_dict()  # instance norm: no buffers
    assert ModelSpec(label_nc=3, contain_dontcare=False, use_instance=False).build_encoder() is None


@pytest.mark.parametrize(
    "fields",
    [{}, {"ngf": 4, "use_vae": True, "z_dim": 8}, {"norm": "instance", "spectral": False}, {"spade_hidden": 16}],
    ids=["plain", "vae", "instance-no-spectral", "hidden-16"],
)
def test_spec_from_original_reads_the_architecture_from_the_state_dict(fields):
    spec = ModelSpec(
        **{"label_nc": 8, "contain_dontcare": False, "use_instance": False, "ngf": 2, "crop_size": 64, **fields}
    )
    state = spec.build_generator().state_dict()
    assert spec_from_original(state) == spec  # the preset found from the 8 channels: synthetic, 64 px
    assert spec_from_original({f"module.{k}": v for k, v in state.items()}, "synthetic") == spec
    load_generator_weights(spec.build_generator(), state)
    with pytest.raises(ValueError, match=r"preset must be one of \[.*\], got 'kitti'"):
        spec_from_original(state, "kitti")
    with pytest.raises(ValueError, match="no head_0 block"):
        spec_from_original({"fc.weight": state["fc.weight"]})


# ---------------------------------------------------------------------------------------------------------------------
# Residual block.


@pytest.mark.parametrize(("fin", "fout"), [(8, 8), (8, 4), (4, 8)])
def test_resnet_block_matches_its_formula(fin, fout):
    torch.manual_seed(0)
    block = SPADEResnetBlock(fin, fout, 3)
    x, seg = torch.randn(2, fin, 8, 8), one_hot_seg(2, 3, 16, 16)
    block(x, seg)  # one training forward so the running statistics are not the identity
    block.eval()
    with torch.no_grad():
        out = block(x, seg)

        def conv(name: str, inp: torch.Tensor) -> torch.Tensor:
            c = getattr(block, name)
            w = c.weight_orig / sigma(c.weight_orig, c.weight_u, c.weight_v)
            return F.conv2d(inp, w, c.bias, padding=c.padding)

        dx = conv("conv_0", F.leaky_relu(block.norm_0(x, seg), 0.2))
        dx = conv("conv_1", F.leaky_relu(block.norm_1(dx, seg), 0.2))
        shortcut = conv("conv_s", block.norm_s(x, seg)) if fin != fout else x
    torch.testing.assert_close(out, shortcut + dx)
    assert block.conv_0.out_channels == min(fin, fout) == block.norm_1.num_features


def test_resnet_block_keys_follow_the_original():
    learned = SPADEResnetBlock(8, 4, 3).state_dict()
    assert {k.split(".")[0] for k in learned} == {"conv_0", "conv_1", "conv_s", "norm_0", "norm_1", "norm_s"}
    assert {k for k in learned if k.startswith("conv_s")} == {
        "conv_s.weight_orig",
        "conv_s.weight_u",
        "conv_s.weight_v",
    }
    assert "conv_0.weight" not in learned
    identity = SPADEResnetBlock(8, 8, 3).state_dict()
    assert not any(k.startswith(("conv_s", "norm_s")) for k in identity)
    plain = SPADEResnetBlock(8, 4, 3, spectral=False, norm="instance").state_dict()
    assert "conv_0.weight" in plain
    assert "conv_s.bias" not in plain
    assert not any("param_free_norm" in k for k in plain)


# ---------------------------------------------------------------------------------------------------------------------
# Generator.


@pytest.mark.parametrize(
    ("mode", "crop", "aspect", "size"),
    [
        ("normal", 64, 1.0, (64, 64)),  # sw = 64 / 32 = 2
        ("normal", 128, 2.0, (64, 128)),  # sw = 4, sh = 2
        ("more", 64, 1.0, (64, 64)),  # sw = 64 / 64 = 1
        ("most", 128, 1.0, (128, 128)),  # sw = 128 / 128 = 1
    ],
)
@pytest.mark.parametrize("use_vae", [False, True], ids=["mask", "vae"])
def test_generator_output_shape(mode, crop, aspect, size, use_vae):
    torch.manual_seed(0)
    generator = SPADEGenerator(
        4, ngf=4, num_upsampling_layers=mode, crop_size=crop, aspect_ratio=aspect, use_vae=use_vae, z_dim=8
    )
    assert generator.output_size == size
    out = generator(one_hot_seg(2, 4, *size))
    assert out.shape == (2, 3, *size)
    assert out.abs().max() <= 1


@pytest.mark.parametrize(
    ("mode", "crop", "sizes"),
    [
        ("normal", 64, [2, 4, 4, 8, 16, 32, 64]),
        ("more", 64, [1, 2, 4, 8, 16, 32, 64]),
        ("most", 128, [1, 2, 4, 8, 16, 32, 64, 128]),
    ],
)
def test_generator_block_resolutions(mode, crop, sizes):
    # Batch statistics: instance norm has nothing to normalize over on the 1x1 starting map.
    generator = SPADEGenerator(3, ngf=4, num_upsampling_layers=mode, crop_size=crop, norm="batch")
    names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"] + (
        ["up_4"] if mode == "most" else []
    )
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for name in names:
        generator.get_submodule(name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, (tuple(args[0].shape), tuple(args[1].shape)))
        )
    generator(one_hot_seg(2, 3, crop, crop))
    assert [seen[n][0][2] for n in names] == sizes
    assert all(seen[n][1] == (2, 3, crop, crop) for n in names)  # every block gets the full-resolution mask
    final_nc = 2 if mode == "most" else 4
    assert seen[names[-1]][0][1] == 2 * final_nc


def test_generator_fc_sees_the_nearest_downsampled_mask():
    generator = SPADEGenerator(3, ngf=2, crop_size=64, norm="instance")
    seg = one_hot_seg(1, 3, 64, 64)
    captured = []
    generator.fc.register_forward_hook(lambda m, args, out: captured.append(args[0]))
    generator(seg)
    # Nearest resize from 64 to 2 picks source pixels 0 and 32.
    torch.testing.assert_close(captured[0], seg[:, :, ::32, ::32], rtol=0, atol=0)


def test_vae_fc_output_is_reshaped_channel_major_to_16nf_by_sh_by_sw():
    # aspect 2: the starting map is 1 x 2; a plain view (N, 16nf, sh, sw) of fc(z), as the original checkpoints expect.
    generator = SPADEGenerator(3, ngf=2, crop_size=64, aspect_ratio=2.0, use_vae=True, z_dim=4, norm="batch").eval()
    with torch.no_grad():
        generator.fc.weight.zero_()
        generator.fc.bias.copy_(torch.arange(64.0))  # 16 nf * sh * sw = 32 * 1 * 2
    captured = []
    generator.head_0.register_forward_hook(lambda m, args, out: captured.append(args[0]))
    generator(one_hot_seg(1, 3, 32, 64), torch.randn(1, 4))
    torch.testing.assert_close(captured[0], torch.arange(64.0).view(1, 32, 1, 2), rtol=0, atol=0)


def test_generator_output_is_tanh_of_conv_img_of_leaky_relu():
    generator = SPADEGenerator(3, ngf=2, crop_size=64, norm="instance")
    captured = []
    generator.up_3.register_forward_hook(lambda m, args, out: captured.append(out))
    out = generator(one_hot_seg(1, 3, 64, 64))
    expected = torch.tanh(generator.conv_img(F.leaky_relu(captured[0], 0.2)))
    torch.testing.assert_close(out, expected)


def test_integer_labels_equal_their_one_hot_map():
    generator = SPADEGenerator(4, ngf=2, crop_size=64, norm="instance").eval()  # eval: no power iteration
    ids = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(1))
    one_hot = F.one_hot(ids, 4).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(generator(ids), generator(one_hot))
    torch.testing.assert_close(generator(ids[:, None]), generator(one_hot))


@pytest.mark.parametrize("use_vae", [False, True])
def test_ids_and_edges_equal_the_semantic_map_in_output_and_every_gradient(use_vae, monkeypatch):
    """Classes, the dontcare id and the instance-edge channel as the trainer passes them (ids and edges: every layer's
    first convolution and fc by table lookups, 35 classes being enough for them) against the float map the
    discriminator reads (one-hot and edges), in float64: the output and the gradient of every parameter."""
    from spade_gan.data.semantics import semantic_inputs

    import spadenorm.modules.spade as spade_module

    classes = spade_module.LOOKUP_MIN_CLASSES + 2  # and dontcare: one more id; then the edge channel
    torch.manual_seed(0)
    generator = SPADEGenerator(classes + 2, ngf=2, crop_size=32, norm="batch", use_vae=use_vae, z_dim=4).double()
    label = torch.randint(0, classes, (2, 1, 32, 32), generator=torch.Generator().manual_seed(1))
    label[:, :, :6, :6] = 255  # don't care: the id after the classes
    instance = torch.randint(0, 3, (2, 1, 32, 32), generator=torch.Generator().manual_seed(2))
    seg = semantic_inputs(label, instance, label_nc=classes, contain_dontcare=True)
    z = torch.randn(2, 4, dtype=torch.float64) if use_vae else None
    lookups = []
    real_lookup = spade_module.label_conv
    monkeypatch.setattr(spade_module, "label_conv", lambda *a: lookups.append(1) or real_lookup(*a))
    results = []
    for args, kwargs in (((seg.map.double(), z), {}), ((seg.ids, z), {"extra": seg.edges.double()})):
        g = copy.deepcopy(generator)  # spectral norm's power iteration updates u in training: one copy per run
        out = g(*args, **kwargs)
        out.backward(torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3)))
        results.append((out, {name: p.grad for name, p in g.named_parameters()}))
    (want, want_grads), (got, got_grads) = results
    assert len(lookups) == sum(isinstance(m, spade_module.SPADE) for m in generator.modules())  # the ids run only
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-9, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_generator_extra_channels_are_checked():
    generator = SPADEGenerator(5, ngf=2, crop_size=32, norm="instance")
    ids = torch.randint(0, 4, (1, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, label_nc - E = 4\), got ids in \[0, 4\]"):
        generator(ids.clamp(max=3).index_fill(2, torch.tensor([0]), 4), extra=torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"extra must have shape \(N, E, h, w\) = \(1, E, 32, 32\)"):
        generator(ids, extra=torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="extra goes with integer class ids"):
        generator(one_hot_seg(1, 5, 32, 32), extra=torch.zeros(1, 1, 32, 32))
    clade = SPADEGenerator(5, ngf=2, crop_size=32, norm="instance", modulation="clade")
    with pytest.raises(ValueError, match="cannot take extra channels"):
        clade(ids, extra=torch.zeros(1, 1, 32, 32))


def test_vae_generator_uses_z_and_samples_it_when_absent():
    generator = SPADEGenerator(3, ngf=2, crop_size=64, use_vae=True, z_dim=8, norm="instance").eval()
    seg = one_hot_seg(2, 3, 64, 64)
    z = torch.randn(2, 8)
    torch.testing.assert_close(generator(seg, z), generator(seg, z))
    assert not torch.allclose(generator(seg, z), generator(seg, -z))
    torch.manual_seed(3)
    sampled = generator(seg)
    torch.manual_seed(3)
    torch.testing.assert_close(sampled, generator(seg, torch.randn(2, 8)))


def test_generator_bad_input_raises_clear_errors():
    generator = SPADEGenerator(5, ngf=2, crop_size=64, norm="instance")
    with pytest.raises(ValueError, match=r"label_nc=5.*got \(1, 4, 64, 64\)"):
        generator(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"\[0, label_nc=5\).*255"):
        generator(torch.full((1, 64, 64), 255))
    with pytest.raises(ValueError, match="use_vae=True"):
        generator(torch.rand(1, 5, 64, 64), torch.randn(1, 256))
    vae = SPADEGenerator(5, ngf=2, crop_size=64, use_vae=True, z_dim=8, norm="instance")
    with pytest.raises(ValueError, match=r"z_dim=8.*got \(1, 7\)"):
        vae(torch.rand(1, 5, 64, 64), torch.randn(1, 7))


def test_generator_checks_label_ids_with_one_host_read(monkeypatch):
    """The generator reads the ids' range once per batch; its layers (which get the ids) check them as on CUDA,
    with a device-side assertion and no host read."""
    generator = SPADEGenerator(5, ngf=2, crop_size=64, norm="instance")
    reads = []
    aminmax = torch.aminmax

    def counted(t, *args, **kwargs):
        reads.append(tuple(t.shape))
        return aminmax(t, *args, **kwargs)

    def asynchronous(labels, num_classes, name):
        torch._assert_async(((labels >= 0) & (labels < num_classes)).all(), f"{name} out of range")

    monkeypatch.setattr(torch, "aminmax", counted)
    monkeypatch.setattr(spadenorm._validation, "check_label_range", asynchronous)
    ids = torch.randint(0, 5, (2, 1, 64, 64))
    generator(ids)
    assert reads == [(2, 64, 64)]
    ids[0, 0, 0, 0], ids[1, 0, 5, 5] = -1, 7
    with pytest.raises(ValueError, match=r"seg class ids must lie in \[0, label_nc=5\), got ids in \[-1, 7\]"):
        generator(ids)


def test_networks_reject_other_objects_with_type_error():
    with pytest.raises(TypeError, match=r"seg must be a torch\.Tensor, got list"):
        SPADEGenerator(5, ngf=2, crop_size=64, norm="instance")([[0]])
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        ConvEncoder(ngf=2, z_dim=4)([[0.0]])
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got NoneType"):
        MultiscaleDiscriminator(6, ndf=4)(None)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got ndarray"):
        VGG19Features()(torch.zeros(1, 3, 8, 8).numpy())
    with pytest.raises(TypeError, match=r"ngf must be a positive int, got float 2\.0"):
        SPADEGenerator(5, ngf=2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_upsampling_layers": "many"}, "num_upsampling_layers must be one of"),
        ({"crop_size": 16}, "crop_size must be >= 32"),
        ({"crop_size": 64, "aspect_ratio": 4.0}, "starting map"),
        ({"ngf": 0}, "ngf must be a positive int"),
        ({"aspect_ratio": 0}, "aspect_ratio must be > 0"),
    ],
)
def test_generator_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SPADEGenerator(3, **kwargs)
    with pytest.raises(ValueError, match="label_nc must be a positive int"):
        SPADEGenerator(0)


def test_init_weights_is_xavier_normal_with_gain_002_and_zero_bias():
    torch.manual_seed(0)
    layer = nn.Linear(1000, 600)
    init_weights(layer)
    expected = 0.02 * (2 / (1000 + 600)) ** 0.5
    assert abs(layer.weight.std().item() / expected - 1) < 0.01
    assert abs(layer.weight.mean().item()) < 0.01 * expected
    assert torch.equal(layer.bias, torch.zeros(600))
    generator = SPADEGenerator(3, ngf=16, crop_size=64, norm="instance")
    w = generator.head_0.conv_0.weight_orig  # 256 -> 256, 3x3: fan_in = fan_out = 2304
    assert abs(w.std().item() / (0.02 * (2 / 4608) ** 0.5) - 1) < 0.02
    for module in generator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            assert not module.bias.any()


# ---------------------------------------------------------------------------------------------------------------------
# Encoder.


@pytest.mark.parametrize(("crop", "layers", "side"), [(256, 6, 4), (128, 5, 8)])
def test_encoder_shapes_and_layout(crop, layers, side):
    encoder = ConvEncoder(crop_size=crop, ngf=4, z_dim=8)
    assert encoder.fc_mu.in_features == encoder.fc_var.in_features == 32 * side * side
    keys = encoder.state_dict().keys()
    assert f"layer{layers}.0.weight_orig" in keys
    assert f"layer{layers + 1}.0.weight_orig" not in keys
    assert not any(k.startswith("layer") and k.endswith(".bias") for k in keys)  # no bias before instance norm
    captured = []
    getattr(encoder, f"layer{layers}").register_forward_hook(lambda m, args, out: captured.append(out.shape))
    mu, logvar = encoder(torch.randn(2, 3, 100, 60))  # any size: resized to 256x256 first
    assert mu.shape == logvar.shape == (2, 8)
    assert captured == [torch.Size([2, 32, side, side])]


def test_encoder_layers_are_stride_2_spectral_instance_convs():
    encoder = ConvEncoder(ngf=4, z_dim=8)
    widths = [3, 4, 8, 16, 32, 32, 32]
    for i in range(1, 7):
        conv, norm = getattr(encoder, f"layer{i}")
        assert (conv.in_channels, conv.out_channels) == (widths[i - 1], widths[i])
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (2, 2), (1, 1))
        assert hasattr(conv, "weight_orig")
        assert isinstance(norm, nn.InstanceNorm2d)
        assert not norm.affine


def test_encoder_rejects_non_images():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ConvEncoder(ngf=2, z_dim=4)(torch.randn(1, 4, 32, 32))


def test_reparameterize_is_mu_plus_eps_times_std():
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mu + eps * logvar.mul(0.5).exp())
    many = reparameterize(torch.full((200_000,), 2.0), torch.full((200_000,), 2 * torch.log(torch.tensor(3.0))))
    assert abs(many.mean().item() - 2.0) < 0.05
    assert abs(many.std().item() - 3.0) < 0.05


# ---------------------------------------------------------------------------------------------------------------------
# Discriminator.


def side_after(length: int, stride: int) -> int:
    """A 4x4 conv with padding 2: floor((L + 4 - 4) / stride) + 1."""
    return length // stride + 1


def test_discriminator_feature_shapes_at_each_scale():
    discriminator = MultiscaleDiscriminator(7, ndf=4, n_layers_D=4, num_D=3)
    outputs = discriminator(torch.randn(2, 7, 64, 48))
    assert len(outputs) == 3
    for scale, (h, w) in enumerate([(64, 48), (32, 24), (16, 12)]):
        expected = []
        for channels, stride in [(4, 2), (8, 2), (16, 2), (32, 1), (1, 1)]:
            h, w = side_after(h, stride), side_after(w, stride)
            expected.append((2, channels, h, w))
        assert [tuple(f.shape) for f in outputs[scale]] == expected


def test_discriminator_widths_cap_at_512_and_last_middle_conv_has_stride_1():
    with torch.device("meta"):
        discriminator = NLayerDiscriminator(4, ndf=128, n_layers_D=5)
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 256, 512, 512, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) and c.padding == (2, 2) for c in convs)
    keys = discriminator.state_dict().keys()
    assert {"model0.0.weight", "model0.0.bias", "model5.0.weight", "model5.0.bias"} <= keys
    for i in range(1, 5):
        assert {f"model{i}.0.0.weight_orig", f"model{i}.0.0.weight_u", f"model{i}.0.0.weight_v"} <= keys
        assert f"model{i}.0.0.bias" not in keys
        assert isinstance(discriminator.get_submodule(f"model{i}.0.1"), nn.InstanceNorm2d)


def test_discriminator_downsampling_excludes_padding():
    pooled = MultiscaleDiscriminator.downsample(torch.ones(1, 1, 6, 6))
    # With count_include_pad=True the corners would be 4/9 and the edges 6/9.
    torch.testing.assert_close(pooled, torch.ones(1, 1, 3, 3))
    discriminator = MultiscaleDiscriminator(3, ndf=4, n_layers_D=2).eval()  # eval: no power iteration
    x = torch.randn(1, 3, 32, 32)
    outputs = discriminator(x)
    coarse = discriminator.discriminator_1(F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False))
    for a, b in zip(outputs[1], coarse, strict=True):
        torch.testing.assert_close(a, b)


def test_discriminator_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"input_nc=7.*\(1, 6, 32, 32\)"):
        MultiscaleDiscriminator(7, ndf=4)(torch.randn(1, 6, 32, 32))


def test_models_namespace_exports():
    assert set(models.__all__) >= {
        "SPADEResnetBlock",
        "SPADEGenerator",
        "ConvEncoder",
        "MultiscaleDiscriminator",
        "NLayerDiscriminator",
        "init_weights",
        "ModelSpec",
        "reparameterize",
    }
    assert set(synthesis.__all__) >= {"load_original_generator", "load_state_dict_file", "load_model"}
    assert all(hasattr(models, name) for name in models.__all__)
    assert all(hasattr(synthesis, name) for name in synthesis.__all__)
