"""`ailut convert` and model directories; faithfulness to the authors' PyTorch model.

The reference here is an independent PyTorch forward pass written from docs/method.md on the
raw .pth state dict: it shares no code with the package. The authors' files are read
from $AILUT_OFFICIAL_DIR (tests/_models.py) and never copied.
"""

import json
import os
from pathlib import Path

import _models
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _models import filled_model
from flax import nnx

from ailut_jax import Enhancer, cli
from ailut_jax.convert import (
    ConversionError,
    infer_config,
    load_resnet18_weights,
    model_from_state_dict,
)
from ailut_jax.modeldir import ModelDirError, load_model_dir, save_model_dir
from ailut_jax.models import ModelConfig, count_params, empty_model

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch comes with the optional `convert` extra
    torch = F = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch (the convert extra) not installed")


def _srgb() -> Path:
    return _models.official_file(_models.SRGB_NAME)


def _xyz() -> Path:
    return _models.official_file(_models.XYZ_NAME)


# ------------------------------------------------ independent PyTorch reference


def _torch_state_dict(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _torch_ailut(img, lut, vertices):
    """AiLUT transform of one (3, H, W) image: lower_bound cell, unclamped fraction."""
    d = lut.shape[-1]
    cells, fracs = [], []
    for c in range(3):
        x = img[c].reshape(-1).contiguous()
        v = vertices[c].contiguous()
        k = (torch.searchsorted(v, x) - 1).clamp(0, d - 2)
        cells.append(k)
        fracs.append((x - v[k]) / (v[k + 1] - v[k] + 1e-10))
    (kr, kg, kb), (tr, tg, tb) = cells, fracs
    flat = lut.reshape(3, -1)
    out = 0
    for j, wb in ((0, 1 - tb), (1, tb)):
        for i, wg in ((0, 1 - tg), (1, tg)):
            for h, wr in ((0, 1 - tr), (1, tr)):
                out = out + flat[:, ((kb + j) * d + (kg + i)) * d + (kr + h)] * (wr * wg * wb)
    return out.reshape(img.shape)


def _torch_adaint(sd, img_hwc):
    """docs/method.md on the state dict: returns output (H, W, 3), lut, vertices, w."""
    with torch.no_grad():
        return _torch_adaint_impl(sd, img_hwc)


def _torch_adaint_impl(sd, img_hwc):
    img = torch.from_numpy(img_hwc).permute(2, 0, 1)[None].contiguous()
    x = F.interpolate(img, size=(256, 256), mode="bilinear", align_corners=False)
    for i in range(5):
        conv = F.conv2d(x, sd[f"backbone.{i}.0.weight"], sd[f"backbone.{i}.0.bias"], 2, 1)
        x = F.leaky_relu(conv, 0.2)
        if i < 4:
            x = F.instance_norm(
                x, weight=sd[f"backbone.{i}.2.weight"], bias=sd[f"backbone.{i}.2.bias"], eps=1e-5
            )
    feat = F.adaptive_avg_pool2d(x, 2).flatten(1)
    gen = "lut_generator.weights_generator"
    w = F.linear(feat, sd[f"{gen}.weight"], sd[f"{gen}.bias"])
    bank = sd["lut_generator.basis_luts_bank.weight"]
    d = round((bank.shape[0] / 3) ** (1 / 3))
    lut = F.linear(w, bank).view(3, d, d, d)
    ada = "adaint.intervals_generator"
    logits = F.linear(feat, sd[f"{ada}.weight"], sd[f"{ada}.bias"]).view(3, d - 1)
    vertices = F.pad(logits.softmax(-1).cumsum(-1), (1, 0))
    out = _torch_ailut(img[0], lut, vertices)
    return out.permute(1, 2, 0).numpy(), lut.numpy(), vertices.numpy(), w[0].numpy()


def _quantize(y):
    return np.rint(np.clip(y, 0, 1) * 255).astype(np.int32)


def _photo(size=None):
    from PIL import Image

    with Image.open(_models.official_file(_models.PHOTO_NAME)) as im:
        im = im.convert("RGB")
        if size is not None:
            im = im.resize(size, Image.BICUBIC)
        return np.asarray(im).astype(np.float32) / np.float32(255)


@pytest.fixture(scope="module")
def srgb_dir(tmp_path_factory):
    checkpoint = _srgb()
    out = tmp_path_factory.mktemp("convert") / "fivek-srgb"
    assert cli.main(["convert", str(checkpoint), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def srgb_model(srgb_dir):
    return load_model_dir(srgb_dir)


@pytest.fixture(scope="module")
def forward():
    return nnx.jit(lambda model, img: model(img))


# ------------------------------------------------------------------- convert


@needs_torch
def test_convert_writes_a_self_describing_directory(srgb_dir, srgb_model):
    document = json.loads((srgb_dir / "config.json").read_text())
    assert document["format"] == "ailut-jax-model"
    assert ModelConfig.from_dict(document["model"]) == ModelConfig()
    assert document["metadata"]["n_params"] == 619_724
    assert document["metadata"]["source_file"] == "AiLUT-FiveK-sRGB.pth"
    assert (srgb_dir / "params").is_dir()
    assert count_params(srgb_model) == 619_724
    # Every tensor landed where it belongs, in the Flax layout.
    sd = {k: v.numpy() for k, v in _torch_state_dict(_srgb()).items()}
    np.testing.assert_array_equal(
        srgb_model.backbone.conv3.kernel[...], sd["backbone.2.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(srgb_model.backbone.norm4.scale[...], sd["backbone.3.2.weight"])
    bank = sd["lut_generator.basis_luts_bank.weight"]
    np.testing.assert_array_equal(
        srgb_model.basis_luts()[2, 1, 4, 5, 6], bank[(33 + 4) * 1089 + 5 * 33 + 6, 2]
    )
    np.testing.assert_array_equal(
        srgb_model.adaint.intervals_generator.kernel[...],
        sd["adaint.intervals_generator.weight"].T,
    )


@needs_torch
def test_xyz_checkpoint_converts_and_runs(tmp_path, forward):
    out = tmp_path / "xyz"
    assert cli.main(["convert", str(_xyz()), "--out", str(out)]) == 0
    model = load_model_dir(out)
    assert model.config == ModelConfig() and count_params(model) == 619_724
    # The photo stands in for an XYZ input; what matters is agreement with PyTorch.
    img = _photo((96, 64))
    res = forward(model, jnp.asarray(img)[None])
    ref_out, _, ref_vertices, ref_w = _torch_adaint(_torch_state_dict(_xyz()), img)
    np.testing.assert_allclose(res.weights[0], ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.vertices[0], ref_vertices, atol=1e-6)
    diff = np.abs(_quantize(np.asarray(res.output[0])) - _quantize(ref_out))
    assert (diff == 0).mean() >= 0.999 and diff.max() <= 1
    v = np.asarray(res.vertices[0])
    assert np.all(np.diff(v, axis=-1) > 0)
    assert np.abs(v - np.arange(33) / 32).max() > 0.01


def _official_state_dict():
    return {k: v.numpy() for k, v in _torch_state_dict(_srgb()).items()}


@needs_torch
def test_convert_refuses_missing_unexpected_and_misshapen_keys():
    sd = _official_state_dict()
    broken = dict(sd)
    del broken["backbone.1.2.bias"]
    broken["backbone.9.0.weight"] = np.zeros((1,), np.float32)
    broken["backbone.4.0.weight"] = np.zeros((128, 128, 5, 5), np.float32)
    with pytest.raises(ConversionError) as info:
        model_from_state_dict(broken, what="broken.pth")
    msg = str(info.value)
    assert "broken.pth" in msg
    assert "missing keys ['backbone.1.2.bias']" in msg
    assert "unexpected keys ['backbone.9.0.weight']" in msg
    assert "backbone.4.0.weight: shape (128, 128, 5, 5)" in msg
    # Buffers of the original carry no parameters and are accepted.
    model_from_state_dict({**sd, "cnt_iters": np.zeros(())})


@needs_torch
def test_infer_config_reads_the_architecture():
    sd = _official_state_dict()
    assert infer_config(sd) == ModelConfig()
    no_adaint = {k: v for k, v in sd.items() if not k.startswith("adaint.")}
    no_adaint["lut_generator.weights_generator.weight"] = np.zeros((3, 8192), np.float32)
    assert infer_config(no_adaint) == ModelConfig(en_adaint=False)
    shared = dict(sd)
    shared["adaint.intervals_generator.weight"] = np.zeros((32, 512), np.float32)
    assert infer_config(shared).adaint_share
    with pytest.raises(ConversionError, match="missing key"):
        infer_config({"backbone.0.0.weight": np.zeros(1)})


@needs_torch
def test_convert_errors_name_the_file(tmp_path, capsys):
    assert cli.main(["convert", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.pth: no such checkpoint file" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip or a pickle")
    assert cli.main(["convert", str(junk), "--out", str(tmp_path / "o")]) == 2
    assert "junk.pth: cannot read as a PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@needs_torch
def test_resnet18_round_trip_through_torch_keys(tmp_path):
    """A ResNet-18 AiLUT saved with the original's key names converts back exactly."""
    from ailut_jax.convert import key_mapping

    config = ModelConfig(backbone="resnet18", n_ranks=5)
    model = filled_model(config, seed=1)
    pure = nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))
    sd = {}
    for key, (path, _) in key_mapping(config).items():
        value = pure
        for name in path:
            value = value[name]
        value = np.asarray(value)
        # Undo the conversion transforms to produce the PyTorch layouts.
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            value = value.T
        elif value.ndim == 5:
            value = value.reshape(5, -1).T
        sd[key] = value
    sd["backbone.net.bn1.num_batches_tracked"] = np.zeros((), np.int64)
    back = model_from_state_dict(sd)
    assert back.config == config
    a = jax.tree_util.tree_leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))
    b = jax.tree_util.tree_leaves(nnx.state(back, (nnx.Param, nnx.BatchStat)))
    assert len(a) == len(b) == len(sd) - 1 == 105  # 20 convs, 20 x 4 BN, 5 generator
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)

    # The backbone computes what torchvision's resnet18 (eval mode, no fc) computes.
    img = np.random.default_rng(2).random((1, 70, 90, 3), dtype=np.float32)
    ours = np.asarray(nnx.jit(lambda m, x: m.backbone(x))(back, jnp.asarray(img)))
    ref = _torch_resnet18_features({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, img)
    assert ours.shape == ref.shape == (1, 512)
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()

    # User-supplied torchvision weights (with its classifier) load into a fresh model.
    tv = {k.removeprefix("backbone.net."): v for k, v in sd.items() if k.startswith("backbone.")}
    tv["fc.weight"], tv["fc.bias"] = np.zeros((1000, 512), np.float32), np.zeros(1000, np.float32)
    fresh = load_resnet18_weights(empty_model(config), tv)
    for x, y in zip(
        jax.tree_util.tree_leaves(nnx.state(fresh.backbone, (nnx.Param, nnx.BatchStat))),
        jax.tree_util.tree_leaves(nnx.state(back.backbone, (nnx.Param, nnx.BatchStat))),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    del tv["layer3.1.bn2.running_var"]
    with pytest.raises(ConversionError, match=r"missing keys \['layer3.1.bn2.running_var'\]"):
        load_resnet18_weights(empty_model(config), tv)


def _torch_resnet18_features(sd, img_hwc):
    """torchvision resnet18.eval() without fc, written with torch.nn.functional."""
    with torch.no_grad():
        return _torch_resnet18_impl(sd, img_hwc)


def _torch_resnet18_impl(sd, img_hwc):
    p = "backbone.net."

    def bn(x, name):
        return F.batch_norm(
            x,
            sd[f"{p}{name}.running_mean"],
            sd[f"{p}{name}.running_var"],
            sd[f"{p}{name}.weight"],
            sd[f"{p}{name}.bias"],
            training=False,
            eps=1e-5,
        )

    x = torch.from_numpy(img_hwc).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    x = F.relu(bn(F.conv2d(x, sd[f"{p}conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for layer in range(1, 5):
        for block in range(2):
            t = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            y = F.relu(
                bn(F.conv2d(x, sd[f"{p}{t}.conv1.weight"], stride=stride, padding=1), f"{t}.bn1")
            )
            y = bn(F.conv2d(y, sd[f"{p}{t}.conv2.weight"], padding=1), f"{t}.bn2")
            if f"{p}{t}.downsample.0.weight" in sd:
                x = bn(
                    F.conv2d(x, sd[f"{p}{t}.downsample.0.weight"], stride=stride),
                    f"{t}.downsample.1",
                )
            x = F.relu(y + x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1).numpy()


# ------------------------------------------------------------ model directories


def _small_model(seed=0):
    return filled_model(ModelConfig(n_vertices=9, n_ranks=2), seed=seed)


def test_model_dir_round_trip_is_bit_exact(tmp_path):
    model = _small_model(3)
    save_model_dir(tmp_path / "m", model, extra_metadata={"step": 7})
    back = load_model_dir(tmp_path / "m")
    assert back.config == model.config
    for x, y in zip(
        jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)),
        jax.tree_util.tree_leaves(nnx.state(back, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["metadata"] == {"step": 7}
    assert oct(os.stat(tmp_path / "m").st_mode & 0o077) != "0o0"  # not left private


def test_model_dir_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "m"
    save_model_dir(target, _small_model(0), extra_metadata={"version": 1})
    before = (target / "config.json").read_text()

    import ailut_jax.modeldir as modeldir

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash while writing")

    monkeypatch.setattr(modeldir.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model_dir(target, _small_model(1), extra_metadata={"version": 2})
    monkeypatch.undo()
    assert (target / "config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left over
    load_model_dir(target)


def test_model_dir_errors(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        load_model_dir(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelDirError, match=r"not a model directory \(no config.json\)"):
        load_model_dir(tmp_path / "plain")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="bad/config.json: unreadable or invalid JSON"):
        load_model_dir(bad)
    save_model_dir(tmp_path / "good", _small_model())
    doc = json.loads((tmp_path / "good" / "config.json").read_text())
    (tmp_path / "good" / "config.json").write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ModelDirError, match="format_version 99"):
        load_model_dir(tmp_path / "good")
    # Config and parameters that disagree (D=9 saved, D=17 claimed).
    doc["model"]["n_vertices"] = 17
    (tmp_path / "good" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelDirError, match=r"basis_luts saved \(2, 3, 9, 9, 9\), config needs"):
        load_model_dir(tmp_path / "good")
    # Damaged array data and a damaged tree description.
    save_model_dir(tmp_path / "damaged", _small_model())
    data = [p for p in (tmp_path / "damaged" / "params").rglob("*") if p.is_file()]
    for p in data:
        if "ocdbt.process" in str(p) and p.parent.name == "d":
            p.write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="damaged/params: cannot restore parameters"):
        load_model_dir(tmp_path / "damaged")
    (tmp_path / "damaged" / "params" / "_METADATA").unlink()
    with pytest.raises(ModelDirError, match="damaged/params: damaged parameter checkpoint"):
        load_model_dir(tmp_path / "damaged")
    save_model_dir(tmp_path / "noparams", _small_model())
    import shutil

    shutil.rmtree(tmp_path / "noparams" / "params")
    with pytest.raises(ModelDirError, match=r"incomplete model directory \(no params/\)"):
        load_model_dir(tmp_path / "noparams")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelDirError, match="exists and is not a model directory"):
        save_model_dir(tmp_path / "file", _small_model())


# --------------------------------------------------------------- faithfulness


def _compare_with_torch(model, forward, img):
    ours = forward(model, jnp.asarray(img)[None])
    ref_out, ref_lut, ref_vertices, ref_w = _torch_adaint(_torch_state_dict(_srgb()), img)
    np.testing.assert_allclose(ours.weights[0], ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.vertices[0], ref_vertices, atol=1e-6)
    np.testing.assert_allclose(ours.lut[0], ref_lut, atol=1e-5)
    a, b = _quantize(np.asarray(ours.output[0])), _quantize(ref_out)
    diff = np.abs(a - b)
    # Measured: 2 of 1,039,680 values off by one at 722x480 (float summation order in the
    # backbone's convolutions), none at 3008x2000. Allow 1 in 100,000, never more than 1.
    assert (diff != 0).sum() <= max(10, diff.size // 100_000), f"{(diff != 0).sum()} differ"
    assert diff.max() <= 1
    return ours, diff, b


@needs_torch
def test_matches_independent_torch_forward_at_480p(srgb_model, forward):
    img = _photo((722, 480))
    ours, diff, ref = _compare_with_torch(srgb_model, forward, img)
    v = np.asarray(ours.vertices[0])
    # Monotone from 0 to ~1 per channel, and truly adaptive (not the uniform grid).
    assert v.shape == (3, 33)
    np.testing.assert_array_equal(v[:, 0], 0.0)
    np.testing.assert_allclose(v[:, -1], 1.0, atol=1e-6)
    assert np.all(np.diff(v, axis=-1) > 0)
    assert np.abs(v - np.arange(33) / 32).max() > 0.02
    # The enhancement is a real change of the photo, not the identity.
    assert np.abs(np.asarray(ours.output[0]) - img).mean() > 0.01
    # The Enhancer (what `ailut enhance` runs: staged jits) gives the same 8-bit image.
    via_enhancer = np.abs(_quantize(np.asarray(Enhancer(srgb_model)(img))) - ref)
    assert (via_enhancer != 0).sum() <= 10 and via_enhancer.max() <= 1


@needs_torch
def test_matches_independent_torch_forward_at_full_resolution(srgb_model, forward):
    img = _photo()
    assert img.shape == (2000, 3008, 3)
    _compare_with_torch(srgb_model, forward, img)
