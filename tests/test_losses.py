"""The loss library: LSiM against the published weights, every loss's gradients, the shared affine map,
size policies, spec errors, and offline weight resolution (generated trunk files, sockets blocked)."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.vgg import cfgs, make_layers

from fluidperc.errors import UserError
from fluidperc.losses import ChannelStats, get_loss, parse_loss_spec
from fluidperc.weights import CATALOG, ChecksumError, MissingWeightsError, WeightStore, default_dirs


def smooth_field(h=64, w=64, phase=0.0):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.sin(xx / 7 + phase) + torch.cos(yy / 11) + 0.5 * torch.sin((xx + yy) / 13)


def as_image(f):
    f = (f - f.min()) / (f.max() - f.min()) * 255
    return f[None, None].expand(1, 3, -1, -1).contiguous()


# --- generated trunk files (ImageNet weights cannot be downloaded here) ----------------------------------------
def _save(state, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trunk_dir(tmp_path_factory):
    """Random-valued files with torchvision's keys and shapes, plus a catalog that trusts their digests."""
    d = tmp_path_factory.mktemp("trunks")
    torch.manual_seed(0)
    states = {
        "vgg16": {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()},
        "alexnet": torchvision.models.alexnet(weights=None).state_dict(),
        "squeezenet1_1": torchvision.models.squeezenet1_1(weights=None).state_dict(),
    }
    catalog = dict(CATALOG)
    for name, state in states.items():
        catalog[name] = replace(CATALOG[name], sha256=_save(state, d / CATALOG[name].filename))
    return d, catalog


@pytest.fixture
def store(trunk_dir, lsim_weights):
    d, catalog = trunk_dir
    return WeightStore([d, lsim_weights.parent], catalog)


@pytest.fixture
def stats():
    return ChannelStats.from_tensor(torch.stack([smooth_field(), 0.5 * smooth_field(phase=1.0)])[None])


# --- LSiM with the real published weights --------------------------------------------------------------------
@pytest.fixture(scope="module")
def lsim_model():
    from conftest import LSIM_WEIGHTS
    from fluidperc.losses.lsim import LSiM

    if not LSIM_WEIGHTS.is_file():
        pytest.skip(f"the LSiM weights are not at {LSIM_WEIGHTS}")
    return LSiM.load(LSIM_WEIGHTS)


def test_lsim_is_zero_for_identical_inputs(lsim_model):
    x = as_image(smooth_field(128, 128))
    assert lsim_model(x, x).item() == 0.0


def test_lsim_is_symmetric_and_non_negative(lsim_model):
    torch.manual_seed(1)
    x, y = torch.rand(4, 3, 96, 96) * 255, torch.rand(4, 3, 96, 96) * 255
    d_xy, d_yx = lsim_model(x, y), lsim_model(y, x)
    assert d_xy.shape == (4,)
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-5, atol=0)
    assert (d_xy > 0).all()


def test_lsim_satisfies_a_triangle_inequality_sample(lsim_model):
    a, b, c = (as_image(smooth_field(128, 128, phase=p)) for p in (0.0, 0.6, 1.5))
    assert lsim_model(a, c) <= lsim_model(a, b) + lsim_model(b, c)


def test_lsim_ranks_a_one_pixel_shift_closer_than_an_eight_pixel_shift(lsim_model):
    x = as_image(smooth_field(128, 128))
    assert lsim_model(x, x.roll(1, -1)) < lsim_model(x, x.roll(8, -1))


def test_lsim_refuses_a_file_with_the_wrong_checksum(tmp_path, lsim_weights):
    from fluidperc.losses.lsim import LSiM

    bad = tmp_path / "LSiM.pth"
    bad.write_bytes(lsim_weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(UserError, match="sha256 does not match"):
        LSiM.load(bad)


def test_lsim_is_differentiable_even_at_zero_distance(lsim_model):
    x = as_image(smooth_field(64, 64)).requires_grad_(True)
    lsim_model(x, x.detach()).sum().backward()
    assert torch.isfinite(x.grad).all()


# --- every loss ------------------------------------------------------------------------------------------------
SUM = {"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"}, {"weight": 0.1, "loss": "lsim"}]}
ALL_SPECS = ["mse", "mae", "lsim", "vgg", {"name": "vgg", "layers": {"relu1_2": 0.5, "relu2_2": 1.0}},
             {"name": "lpips", "net": "alex"}, {"name": "lpips", "net": "vgg"}, {"name": "lpips", "net": "squeeze"},
             SUM]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: parse_loss_spec(s).label)
def test_every_loss_sends_gradients_to_the_prediction(spec, store, stats):
    loss = get_loss(spec, stats, store)
    target = torch.stack([smooth_field(), 0.5 * smooth_field(phase=1.0)])[None].repeat(2, 1, 1, 1)
    pred = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert value.dim() == 0 and value.item() > 0
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters()), "loss weights must be frozen"


@pytest.mark.parametrize("spec", ["lsim", "vgg", {"name": "lpips", "net": "alex"}], ids=str)
def test_shared_affine_map_penalises_a_half_amplitude_prediction(spec, store, stats):
    loss = get_loss(spec, stats, store)
    target = torch.stack([smooth_field(), 0.5 * smooth_field(phase=1.0)])[None]
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # Per-tensor min-max would score every rescaled copy as identical (zero); one shared map ranks them.
    half, ninety = loss(0.5 * target, target).item(), loss(0.9 * target, target).item()
    assert half > ninety > 1e-4 * half > 0


def test_staggered_velocity_loss_is_the_sum_of_component_losses(store, stats):
    loss = get_loss("lsim", stats, store)
    u = smooth_field(64, 65)[None, None]
    v = 0.5 * smooth_field(65, 64, phase=1.0)[None, None]
    pu, pv = 0.8 * u, 0.9 * v
    total = loss.staggered([pu, pv], [u, v])
    assert total.item() == pytest.approx(loss(pu, u, channels=[0]).item() + loss(pv, v, channels=[1]).item(), rel=1e-6)


def test_sum_loss_is_the_weighted_sum_of_its_terms_and_keeps_each_weighted_term(store, stats):
    loss = get_loss(SUM, stats, store)
    assert loss.label == "mse+0.1*lsim"
    target = torch.stack([smooth_field(), 0.5 * smooth_field(phase=1.0)])[None]
    pred = 0.7 * target
    mse, lsim = get_loss("mse")(pred, target).item(), get_loss("lsim", stats, store)(pred, target).item()
    assert loss(pred, target).item() == pytest.approx(mse + 0.1 * lsim, rel=1e-6)
    assert {k: v.item() for k, v in loss.last_terms.items()} == pytest.approx({"mse": mse, "lsim": 0.1 * lsim})
    # staggered components: the terms add up over components as the total does
    u, v = target[:, :1], target[:, 1:]
    total = loss.staggered([0.7 * u, 0.7 * v], [u, v])
    assert sum(t.item() for t in loss.last_terms.values()) == pytest.approx(total.item(), rel=1e-6)


def test_a_sum_needs_the_weights_of_every_term():
    from fluidperc.losses import weights_needed

    spec = {"name": "sum", "terms": [{"weight": 1, "loss": {"name": "vgg", "layer": "relu2_2"}},
                                     {"weight": 0.5, "loss": {"name": "lpips", "net": "squeeze"}}, {"weight": 2, "loss": "mse"}]}
    assert weights_needed(spec) == ["vgg16", "squeezenet1_1"]
    assert parse_loss_spec(spec).label == "vgg-relu2_2+0.5*lpips-squeeze+2*mse"


def test_mse_of_a_velocity_is_the_sum_over_components():
    loss = get_loss("mse")
    pred, target = torch.zeros(2, 2, 4, 4), torch.ones(2, 2, 4, 4)
    target[:, 1] = 2.0
    assert loss(pred, target).item() == pytest.approx(1.0 + 4.0)


# --- size policies ---------------------------------------------------------------------------------------------
def test_too_small_field_without_a_policy_names_loss_size_and_minimum(store, stats):
    loss = get_loss("lsim", stats, store)
    f = torch.zeros(1, 2, 64, 32)
    with pytest.raises(UserError, match=r"'lsim' needs fields of at least 44 px per side, got 64x32"):
        loss(f, f)


@pytest.mark.parametrize("policy", [{"pad_to": [64, 64]}, {"pad_to": [64, 64], "pad_mode": "reflect"},
                                    {"resize_to": [64, 64]}], ids=str)
def test_pad_and_resize_policies_make_a_64x32_field_usable(policy, store, stats):
    loss = get_loss({"name": "lsim", **policy}, stats, store)
    target = smooth_field(64, 32)[None, None].repeat(1, 2, 1, 1)
    pred = (0.7 * target).requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert value.item() > 0 and pred.grad.abs().sum() > 0


def test_pad_policy_pads_centred_with_the_stated_mode():
    from fluidperc.losses.fields import pad_to

    x = torch.arange(6.0).view(1, 1, 2, 3)
    padded = pad_to(x, (2, 7), "replicate")
    assert padded.shape == (1, 1, 2, 7)
    assert padded[0, 0, 0].tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert pad_to(x, (1, 2), "replicate") is x, "a field already larger than pad_to is left as it is"


def test_a_target_size_below_the_minimum_is_refused_when_the_loss_is_built(store, stats):
    with pytest.raises(UserError, match="below its minimum of 31"):
        get_loss({"name": "lpips", "net": "alex", "resize_to": [24, 24]}, stats, store)


# --- specs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, message",
    [
        ("l2", "unknown loss 'l2'; expected one of mse, mae, lsim, vgg, lpips"),
        ({"name": "vgg", "layer": "relu5_3"}, "invalid options for loss 'vgg'"),
        ({"name": "lpips", "net": "resnet"}, "valid options: value_range, pad_to"),
        ({"name": "mse", "pad_to": [64, 64]}, "invalid options for loss 'mse'"),
        ({"name": "lsim", "pad_to": [64, 64], "resize_to": [64, 64]}, "not both"),
        ({"name": "sum", "terms": [{"weight": 0.0, "loss": "mse"}]}, "at least one term needs a weight > 0"),
        ({"name": "sum", "terms": [{"weight": -1.0, "loss": "mse"}, {"weight": 1.0, "loss": "mae"}]},
         "terms.0.weight: Input should be greater than or equal to 0"),
        ({"name": "sum", "terms": [{"weight": float("inf"), "loss": "mse"}]}, "terms.0.weight: Input should be a finite"),
        ({"name": "sum", "terms": [{"weight": 1.0, "loss": "ssim"}]}, "terms.0.loss: unknown loss 'ssim'"),
        ({"name": "sum", "terms": [{"weight": 1.0, "loss": {"name": "sum", "terms": []}}]}, "cannot be sums"),
        ({"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"}, {"weight": 2.0, "loss": "mse"}]}, "more than once"),
    ],
    ids=["unknown-name", "unknown-layer", "unknown-net", "option-on-mse", "two-policies", "sum-all-zero",
         "sum-negative", "sum-infinite", "sum-unknown-term", "sum-of-sums", "sum-repeated-term"],
)
def test_bad_loss_specs_are_rejected_with_the_valid_choices(spec, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_loss_spec(spec)


def test_perceptual_loss_without_dataset_statistics_is_refused(store):
    with pytest.raises(UserError, match="needs the dataset statistics"):
        get_loss("vgg", None, store)


# --- weights resolution ----------------------------------------------------------------------------------------
def test_resolver_searches_fluidperc_dir_before_the_torch_hub_cache(tmp_path, monkeypatch, lsim_weights):
    own, hub = tmp_path / "own", tmp_path / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv("FLUIDPERC_WEIGHTS", str(own))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert default_dirs() == [own, hub]
    store = WeightStore(default_dirs(), dict(CATALOG))
    hub.mkdir(parents=True)
    (hub / "LSiM.pth").write_bytes(lsim_weights.read_bytes())
    assert store.resolve("lsim") == hub / "LSiM.pth"
    own.mkdir()
    (own / "LSiM.pth").write_bytes(lsim_weights.read_bytes())
    assert store.resolve("lsim") == own / "LSiM.pth"


def test_missing_weights_error_names_file_directories_and_fetch_command(tmp_path, stats):
    store = WeightStore([tmp_path / "a", tmp_path / "b"], dict(CATALOG))
    with pytest.raises(MissingWeightsError) as err:
        get_loss("vgg", stats, store)
    text = str(err.value)
    assert "vgg16-397923af.pth" in text and str(tmp_path / "a") in text and str(tmp_path / "b") in text
    assert "python -m fluidperc.weights fetch vgg16" in text


def test_a_file_with_the_wrong_checksum_is_refused(tmp_path, stats):
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"not the weights")
    with pytest.raises(ChecksumError, match="sha256 is .* expected a digest starting with 397923af"):
        get_loss("vgg", stats, WeightStore([tmp_path], dict(CATALOG)))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("spec, name", [("vgg", "vgg16"), ({"name": "lpips", "net": "alex"}, "alexnet")], ids=["vgg", "lpips-alex"])
def test_staged_hub_cache_file_is_used_without_network_access(spec, name, tmp_path, monkeypatch, trunk_dir, stats, no_network):
    src_dir, catalog = trunk_dir
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    staged = hub / catalog[name].filename
    staged.write_bytes((src_dir / catalog[name].filename).read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FLUIDPERC_WEIGHTS", str(tmp_path / "empty"))
    loss = get_loss(spec, stats, WeightStore(default_dirs(), catalog))
    state = torch.load(staged, weights_only=True)
    first = state["features.0.weight"]
    loaded = loss.trunk[0].weight if name == "vgg16" else loss.model.net.slice1[0].weight
    torch.testing.assert_close(loaded, first)
    f = torch.stack([smooth_field(), smooth_field(phase=1.0)])[None]
    assert loss(0.5 * f, f).item() > 0


def test_fetch_downloads_verifies_and_refuses_a_corrupt_download(tmp_path, lsim_weights):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    (served / "LSiM.pth").write_bytes(lsim_weights.read_bytes())
    (served / "corrupt.pth").write_bytes(b"garbage")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        catalog = dict(CATALOG)
        catalog["lsim"] = replace(CATALOG["lsim"], url=f"{base}/LSiM.pth")
        store = WeightStore([tmp_path / "cache"], catalog)
        path = store.fetch("lsim", progress=False)
        assert path == tmp_path / "cache" / "LSiM.pth" and store.resolve("lsim") == path
        catalog["lsim"] = replace(CATALOG["lsim"], url=f"{base}/corrupt.pth")
        bad = WeightStore([tmp_path / "cache2"], catalog)
        with pytest.raises(ChecksumError):
            bad.fetch("lsim", progress=False)
        assert not list((tmp_path / "cache2").iterdir()), "a refused download must leave nothing behind"
    finally:
        server.shutdown()


def test_weights_cli_lists_and_verifies(tmp_path, lsim_weights):
    from conftest import run_module
    import os

    env_dir = tmp_path / "w"
    env_dir.mkdir()
    (env_dir / "LSiM.pth").write_bytes(lsim_weights.read_bytes())
    os.environ["FLUIDPERC_WEIGHTS"] = str(env_dir)
    try:
        listing = run_module("fluidperc.weights", "list")
        verify = run_module("fluidperc.weights", "verify", "lsim")
        unknown = run_module("fluidperc.weights", "verify", "resnet")
    finally:
        del os.environ["FLUIDPERC_WEIGHTS"]
    assert listing.returncode == 0 and f"present: {env_dir / 'LSiM.pth'}" in listing.stdout
    assert verify.returncode == 0 and "lsim: ok" in verify.stdout
    assert unknown.returncode == 2 and "unknown weight file 'resnet'" in unknown.stderr


def test_lpips_split_forward_equals_the_lpips_package(store, stats):
    loss = get_loss({"name": "lpips", "net": "alex"}, stats, store)
    torch.manual_seed(3)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(loss.distance(a, b), loss.model(a * 2 - 1, b * 2 - 1).view(-1))


def test_target_branch_runs_without_autograd_but_gradients_match(store, stats):
    loss = get_loss("vgg", stats, store)
    target = torch.stack([smooth_field(), smooth_field(phase=1.0)])[None]
    pred = (0.7 * target).requires_grad_(True)
    loss(pred, target).backward()
    both = pred.detach().clone().requires_grad_(True)
    tgt = target.clone().requires_grad_(True)  # forces the target through autograd as well
    loss(both, tgt).backward()
    torch.testing.assert_close(pred.grad, both.grad)


@pytest.mark.parametrize("spec", ["lsim", "vgg", {"name": "lpips", "net": "vgg"}], ids=str)
def test_bfloat16_losses_agree_with_float32_and_send_the_same_gradient(spec, store, stats):
    """precision: bfloat16 only changes the network's arithmetic: value within 3%, gradient direction kept."""
    base = {"name": spec} if isinstance(spec, str) else spec
    full, low = get_loss(base, stats, store), get_loss({**base, "precision": "bfloat16"}, stats, store)
    assert low.label == full.label + "-bf16"
    target = torch.stack([smooth_field(), 0.5 * smooth_field(phase=1.0)])[None].repeat(2, 1, 1, 1)
    torch.manual_seed(0)
    noise = 0.3 * torch.randn_like(target)
    grads, values = [], []
    for loss in (full, low):
        pred = (target + noise).requires_grad_(True)
        value = loss(pred, target)
        value.backward()
        values.append(value.item())
        grads.append(pred.grad.flatten())
    assert values[1] == pytest.approx(values[0], rel=0.03)
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.98


def test_channels_last_trunk_computes_torchvisions_vgg16_features(trunk_dir, store, stats):
    """The trunk runs in oneDNN's channels-last layout for speed; its features must still be VGG-16's own."""
    d, _ = trunk_dir
    reference = make_layers(cfgs["D"])[:16]
    state = torch.load(d / CATALOG["vgg16"].filename, weights_only=True)
    reference.load_state_dict({k: state[f"features.{k}"] for k in reference.state_dict()})
    loss = get_loss({"name": "vgg", "layer": "relu3_3"}, stats, store)
    assert loss.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 48)
    (ours,) = loss._features(x)
    expected = reference.eval()((x - loss.mean) / loss.std)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_lsim_in_its_own_regime_resizes_fields_to_224_and_matches_the_network_where_the_paths_must_agree(store, stats):
    """``resize_to: [224, 224]`` (bilinear) feeds the LSiM network 224x224 images, whose feature maps are the sizes
    its normalisation statistics were collected at (55, 26, 12, 12, 12: none interpolated), unlike ``pad_to: [64,
    64]`` (15, 6, 2, 2, 2). On a field that is already 224x224 both paths are the identity and give the reference
    network's own distance on the images."""
    from fluidperc.losses.fields import to_unit

    target = torch.stack([smooth_field(64, 32), 0.5 * smooth_field(64, 32, phase=1.0)])[None].repeat(2, 1, 1, 1)
    pred = target + 0.2 * torch.randn_like(target)
    sizes = {}
    for name, spec in (("resize", {"name": "lsim", "resize_to": [224, 224]}), ("pad", {"name": "lsim", "pad_to": [64, 64]})):
        loss = get_loss(spec, stats, store)
        seen = []
        hooks = [block.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
                 for block in loss.model.trunk]
        inputs = []
        first = loss.model.trunk[0].register_forward_pre_hook(lambda m, i: inputs.append(tuple(i[0].shape[-2:])))
        loss(pred, target)
        for h in (*hooks, first):
            h.remove()
        sizes[name] = (inputs[0], seen[:5])
    assert sizes["resize"] == ((224, 224), [(55, 55), (26, 26), (12, 12), (12, 12), (12, 12)])
    norm = [tuple(getattr(loss.model, f"norm_mean{i}").shape) for i in range(5)]
    assert sizes["resize"][1] == norm, "at 224 no normalisation statistic is interpolated"
    assert sizes["pad"] == ((64, 64), [(15, 15), (6, 6), (2, 2), (2, 2), (2, 2)])

    big_t = torch.stack([smooth_field(224, 224), 0.5 * smooth_field(224, 224, phase=1.0)])[None]
    big_p = big_t + 0.2 * torch.randn_like(big_t)
    resized = get_loss({"name": "lsim", "resize_to": [224, 224]}, stats, store)
    padded = get_loss({"name": "lsim", "pad_to": [224, 224]}, stats, store)
    lo, hi = resized.lo, resized.hi
    images = [to_unit(x, lo, hi).reshape(2, 1, 224, 224).expand(-1, 3, -1, -1) * 255.0 for x in (big_p, big_t)]
    direct = resized.model(*images).sum()  # the reference network on the same images, channel by channel
    torch.testing.assert_close(resized(big_p, big_t), direct, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(padded(big_p, big_t), direct, rtol=1e-5, atol=1e-7)
