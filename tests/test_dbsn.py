"""DBSN equals the authors' code (golden outputs of XHWXD/DBSN for fixed weights, its losses' values), keeps the
blind spot, and loads the authors' checkpoint layout strictly."""

import argparse
import copy
import sys
from pathlib import Path

import pytest
import torch

from adfnet import load_weights
from adfnet.checkpoint import weights_with_architecture
from adfnet.losses import DBSN_LOSSES, DBSNLoss, DBSNMAPLoss, build_dbsn_loss
from adfnet.models import DBSN, build_model
from adfnet.models.dbsn import MAP_FORMS, SigmaNNet
from adfnet.models.dbsn_map import map_estimate, noise_covariances

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from weights import golden_weights  # noqa: E402

PARTS = {"dbsn": "keys", "sigma_mu": "keys_sigma_mu", "sigma_n": "keys_sigma_n"}


@pytest.fixture(scope="module", params=["dbsn_gray_seed0", "dbsn_rgb_seed0"])
def golden(request):
    """The authors' configuration with golden weights, and its estimates in float32 and float64 (one forward each)."""
    g = torch.load(GOLDEN / f"{request.param}.pt")
    model = build_model("dbsn", n_colors=g["n_colors"]).eval()
    keys = {part: [(k, tuple(v.shape)) for k, v in getattr(model, part).state_dict().items()] for part in PARTS}
    for part in PARTS:
        getattr(model, part).load_state_dict(golden_weights(getattr(model, part), g), strict=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            run32 = model.estimate(g["input"]), model(g["input"])
            model64 = copy.deepcopy(model).double()
            default = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)  # as the goldens were made (golden/README.md)
            try:
                run64 = model64.estimate(g["input"].double())
            finally:
                torch.set_default_dtype(default)
    finally:
        torch.set_num_threads(threads)
    return g, model, keys, run32, run64


def flat(covariance, g):
    """Our per-image covariances keep (B, 1, 1, 3, 3); the golden stores (B, 3, 3)."""
    return covariance.reshape(g["sigma_mu"].shape) if g["n_colors"] == 3 else covariance


def test_keys_shapes_and_parameter_counts_are_the_authors(golden):
    g, model, keys, _, _ = golden
    for part, golden_keys in PARTS.items():
        assert keys[part] == [(k, tuple(shape)) for k, shape in g[golden_keys]]
        assert sum(p.numel() for p in getattr(model, part).parameters()) == g["param_counts"][part]
    assert set(model.state_dict()) == {f"{part}.{k}" for part in PARTS for k, _ in keys[part]}


def test_float32_matches_the_authors(golden):
    g, _, _, (e, output), _ = golden
    assert output.dtype == torch.float32
    pairs = [(e.mu, "mu"), (flat(e.sigma_mu, g), "sigma_mu"), (flat(e.sigma_n, g), "sigma_n"), (output, "output")]
    if "sigma_mu_out" in g:  # gray: the raw sigma-net outputs too
        pairs += [(e.sigma_mu_out, "sigma_mu_out"), (e.sigma_n_out, "sigma_n_out")]
    for ours, key in pairs:
        assert (ours - g[key]).abs().max().item() <= 1e-5, key
        assert (ours - g[key]).abs().max().item() <= 1e-5 * g[key].abs().max().item() + 1e-9, key
    if g["n_colors"] == 1:
        assert (output - g["output_float64"]).abs().max().item() <= 1e-5


def test_float64_matches_the_authors(golden):
    g, model, _, _, e = golden
    assert e.mu.dtype == torch.float64
    for ours, key in ((e.mu, "mu"), (flat(e.sigma_mu, g), "sigma_mu"), (flat(e.sigma_n, g), "sigma_n")):
        assert (ours - g[f"{key}_float64"]).abs().max().item() <= 1e-9, key
    y = g["input"].double()
    for gamma, key in ((1.0, "output_float64"), (0.9, "output_gamma09_float64")):
        out = map_estimate(y, e.mu, e.sigma_mu, e.sigma_n, gamma)
        assert (out - g[key]).abs().max().item() <= 1e-9, key
    assert g["gamma"] == model.gamma == 1.0
    # gamma goes to opposite terms in gray and colour: 0.9 moves the output away from the gamma-1 one
    assert (g["output_gamma09_float64"] - g["output_float64"]).abs().max().item() > 1e-4


def test_trainval_form_uses_the_spatial_mean_noise_level_in_gray(golden):
    """The authors' gray training/validation scripts average the noise level over the image, their gray test
    script does not; for colour MG both scripts form the same covariances."""
    g, model, _, _, e = golden
    forms = [noise_covariances(e.sigma_mu_out, e.sigma_n_out, model.noise_type, g["n_colors"], f) for f in MAP_FORMS]
    if g["n_colors"] == 3:
        assert all(torch.equal(a, b) for a, b in zip(*forms, strict=True))
        return
    sigma_mu, sigma_n = forms[MAP_FORMS.index("trainval")]
    assert sigma_n.shape == (1, 1, 1, 1)  # one level per image
    out = map_estimate(g["input"].double(), e.mu, sigma_mu, sigma_n)
    assert (out - g["output_trainval_float64"]).abs().max().item() <= 1e-9
    assert (out - g["output_float64"]).abs().max().item() > 1e-2  # the two forms are far apart here


def test_blind_spot(golden):
    """Changing every channel of one input pixel never changes mu there (exactly), but does change its neighbours;
    at an interior pixel and at a corner (zero padding)."""
    g, model, _, _, _ = golden
    base = g["input"]
    pixels = [(20, 30), (0, 0)]
    batch = base.repeat(1 + len(pixels), 1, 1, 1)
    for i, (r, c) in enumerate(pixels, start=1):
        batch[i, :, r, c] += 0.5
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            mu = model.dbsn(batch)[0]
    finally:
        torch.set_num_threads(threads)
    for i, (r, c) in enumerate(pixels, start=1):
        change = (mu[i] - mu[0]).abs()
        assert change[:, r, c].max().item() == 0.0
        assert change[:, r + 1, c + 1].min().item() > 1e-6 and change[:, r, c + 1].min().item() > 1e-6
        assert change.max().item() > 1e-3


# --- losses ----------------------------------------------------------------------------------------------
LOSS_CASES = {  # case -> (n_colors, the noise_type whose formation made its variances)
    "gray": (1, "poisson_gaussian"),
    "rgb_mg": (3, "multivariate_gaussian"),
    "rgb_hg": (3, "poisson_gaussian"),
}


@pytest.fixture(scope="module")
def losses():
    return torch.load(GOLDEN / "dbsn_losses_seed0.pt")


@pytest.mark.parametrize("case", LOSS_CASES)
def test_variances_are_formed_as_the_training_scripts(losses, case):
    c, (n_colors, noise_type) = losses[case], LOSS_CASES[case]
    sigma_mu, sigma_n = noise_covariances(c["sigma_mu_out"], c["sigma_n_out"], noise_type, n_colors)
    for ours, key in ((sigma_mu, "sigma_mu"), (sigma_n, "sigma_n"), (sigma_mu + sigma_n, "sigma_y")):
        expected = c["inputs"][key]
        assert (ours.expand_as(expected) - expected).abs().max().item() <= 1e-15, key


@pytest.mark.parametrize("dtype, values", [(torch.float64, "values"), (torch.float32, "values_float32")])
@pytest.mark.parametrize("case", LOSS_CASES)
@pytest.mark.parametrize("name", DBSN_LOSSES)
def test_loss_values_are_the_authors(losses, case, name, dtype, values):
    c = losses[case]
    target, mu, sigma_mu, sigma_n, sigma_y = (
        c["inputs"][k].to(dtype) for k in ("target", "mu", "sigma_mu", "sigma_n", "sigma_y")
    )
    loss = build_dbsn_loss(name, LOSS_CASES[case][0])
    value = loss(target, mu) if name == "L2Loss" else loss(target, mu, sigma_mu, sigma_n, sigma_y)
    assert value.dtype == dtype
    expected = c[values][name]
    assert value.item() == pytest.approx(expected, rel=1e-12 if dtype == torch.float64 else 1e-6)


def test_l2_is_a_mean_in_gray_and_a_sum_in_colour():
    target, mu = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert build_dbsn_loss("L2Loss", 3)(target, mu).item() == 12 * 0.25
    assert build_dbsn_loss("L2Loss", 1)(target[:, :1], mu[:, :1]).item() == 0.25


def _gray_inputs(diff=0.1, sigma_mu=1e-3, sigma_n=1e-3):
    target = torch.zeros(1, 1, 2, 2)
    mu = torch.full_like(target, -diff).requires_grad_()
    s_mu = torch.full_like(target, sigma_mu).requires_grad_()
    s_n = torch.full_like(target, sigma_n).requires_grad_()
    return target, mu, s_mu, s_n


@pytest.mark.parametrize("pretrain", [False, True])
def test_gray_map_guard_reads_zero_and_keeps_the_gradient(pretrain):
    """Above 1e8 the authors' MAPLoss reads 0 through loss.data.zero_(): the gradient stays the loss's.
    MAPLoss_Pretrain has no guard."""
    target, mu, s_mu, s_n = _gray_inputs(sigma_mu=1e-13, sigma_n=1e-13)  # d^2 / sigma_y = 5e10
    loss = DBSNMAPLoss(1, pretrain=pretrain)(target, mu, s_mu, s_n, s_mu + s_n)
    sigma_y = 2e-13
    assert loss.item() == (0.0 if not pretrain else pytest.approx(0.01 / sigma_y + torch.tensor(sigma_y).log().item()))
    loss.backward()
    # d/d sigma_mu of mean(d^2 / sigma_y + log sigma_y) over 4 pixels, as if unguarded
    expected = (-0.01 / sigma_y**2 + 1 / sigma_y) / 4
    assert s_mu.grad[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-5)
    assert (mu.grad is None) == pretrain  # pre-training leaves mu alone


def test_gray_dbsn_guard_on_the_prior_term():
    target, mu, s_mu, s_n = _gray_inputs(sigma_mu=200.0, sigma_n=1e-9)  # sigma_mu / max(sigma_n, 1e-6) = 2e8
    assert DBSNLoss(1)(target, mu, s_mu, s_n, s_mu + s_n).item() == 0.0
    s_mu = torch.full_like(target, 50.0)  # 5e7: below the threshold; log and ratio use the clamped 1e-6
    value = DBSNLoss(1)(target, mu, s_mu, s_n, s_mu + s_n).item()
    assert value == pytest.approx(0.01 / (50.0 + 1e-9) + torch.tensor(1e-6).log().item() + 5e7)


def test_colour_guards_differ_between_map_losses():
    """t1 = 0.5 d^T inv(sigma_y) d of 5e7: MAPLoss (1e7) and DBSNLoss read 0, MAPLoss_Pretrain (1e8) does not."""
    target, mu = torch.zeros(1, 3, 1, 1), torch.tensor([-1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    sigma_y = torch.diag_embed(torch.tensor([1e-8, 1.0, 1.0])).reshape(1, 1, 1, 3, 3)
    sigma = sigma_y / 2
    args = (target, mu, sigma, sigma, sigma_y)
    assert DBSNMAPLoss(3)(*args).item() == 0.0
    assert DBSNLoss(3)(*args).item() == 0.0
    expected = 0.5 / 1e-8 + 0.5 * torch.tensor(1e-8, dtype=torch.float64).log().item()  # det = 1e-8, unclamped
    assert DBSNMAPLoss(3, pretrain=True)(*args).item() == pytest.approx(expected, rel=1e-6)


def test_loss_names_and_colours_are_checked():
    with pytest.raises(ValueError, match="unknown DBSN loss 'MSE'"):
        build_dbsn_loss("MSE", 1)
    with pytest.raises(ValueError, match=r"gray \(n_colors=1\) or colour \(n_colors=3\), got 4"):
        build_dbsn_loss("MAPLoss", 4)


# --- construction ----------------------------------------------------------------------------------------
def test_build_model_records_the_authors_configurations():
    gray = build_model("dbsn", n_colors=1)
    assert isinstance(gray, DBSN) and gray.noise_type == "gaussian" and gray.map_form == "test"
    assert gray.spec.options["sigma_mu_mid_ch"] == gray.spec.options["sigma_n_mid_ch"] == 16  # gray_train_g.sh
    assert "gamma" not in gray.spec.options and "map_form" not in gray.spec.options  # settings, not architecture
    colour = build_model("dbsn", n_colors=3)
    assert colour.spec.options["noise_type"] == "multivariate_gaussian" and colour.spec.options["sigma_n_mid_ch"] == 32
    pg = build_model("dbsn", n_colors=1, noise_type="poisson_gaussian")  # gray_train_pg.sh: 32-wide sigma nets
    assert pg.spec.options["sigma_mu_mid_ch"] == 32 and pg.sigma_mu.conv[0].out_channels == 32
    small = build_model("dbsn", 1, mid_ch=8, br1_block_num=1, br2_block_num=2, br2_blindspot_conv_ks=7)
    assert small.spec.options["mid_ch"] == 8 and small.dbsn.br2.branch[0].kernel_size == (7, 7)
    assert sum(".concat.weight" in k for k in small.dbsn.br2.state_dict()) == 2


def test_initialisation_is_the_authors():
    """Gray sigma_n starts at a constant 3e-4 (conv_final zeroed); colour replaces exact zeros by 1e-4 with no
    gradient through them."""
    gray = build_model("dbsn", 1, mid_ch=8, br1_block_num=1, br2_block_num=1)
    assert torch.equal(gray.sigma_n(torch.rand(1, 1, 4, 4)), torch.full((1, 1, 4, 4), 3e-4))
    net = SigmaNNet(3, 6, 8, 5, colour=True)
    torch.nn.init.zeros_(net.conv_final.weight)
    torch.nn.init.zeros_(net.conv_final.bias)
    out = net(torch.rand(1, 3, 4, 4))
    assert torch.equal(out, torch.full((1, 6, 4, 4), 1e-4))
    out.sum().backward()
    assert net.conv_final.bias.grad.abs().max().item() == 0.0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_colors": 4}, "gray .n_colors=1. or colour .n_colors=3."),
        ({"n_colors": 1, "noise_type": "multivariate_gaussian"}, "use n_colors=3"),
        ({"n_colors": 1, "noise_type": "awgn"}, "noise_type must be one of gaussian, poisson_gaussian"),
        ({"n_colors": 1, "gamma": 0.0}, r"gamma \(the MAP weight\) must be > 0, got 0.0"),
        ({"n_colors": 3, "gamma": -1}, "must be > 0"),
        ({"n_colors": 1, "map_form": "val"}, "map_form must be one of test, trainval"),
        ({"n_colors": 1, "br1_blindspot_conv_ks": 4}, "kernel size must be odd"),
        ({"n_colors": 3, "sigma_n_layers": 1}, "sigma_n_layers must be >= 2 for colour"),
        ({"n_colors": 1, "activate_fun": "PReLU"}, "activate_fun must be one of Relu, LeakyRelu"),
        ({"n_colors": 1, "width": 3}, "unknown model option.*width"),
    ],
)
def test_bad_configurations_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        build_model("dbsn", **options)


@pytest.mark.parametrize(
    "n_colors, noise_type, loss",
    [(1, "gaussian", "MAPLoss"), (1, "poisson_gaussian", "DBSNLoss"), (3, "multivariate_gaussian", "DBSNLoss")],
)
def test_a_training_step_reaches_every_net(one_thread, n_colors, noise_type, loss):
    """The losses on the training formation backpropagate into all three nets (in-place ReLUs, the covariance
    factors' scatter and the colour zero replacement included), with finite gradients."""
    model = small_dbsn(n_colors, noise_type=noise_type)
    noisy = torch.rand(2, n_colors, 16, 16)
    e = model.estimate(noisy, map_form="trainval")
    build_dbsn_loss(loss, n_colors)(noisy, e.mu, e.sigma_mu, e.sigma_n, e.sigma_y).backward()
    for part in PARTS:
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), part
        assert any(g.abs().max() > 0 for g in grads), part


def test_map_gamma_must_be_positive():
    x = torch.rand(1, 1, 2, 2)
    with pytest.raises(ValueError, match="must be > 0"):
        map_estimate(x, x, x, x, gamma=0)


# --- the authors' checkpoint layout --------------------------------------------------------------------
def small_dbsn(n_colors=1, **options):
    torch.manual_seed(0)
    return build_model("dbsn", n_colors, mid_ch=8, br1_block_num=1, br2_block_num=1, **options)


def authors_checkpoint(model, prefix="module."):
    """What their training scripts save from nn.DataParallel (gray_train.py), optimizer states and options included."""
    parts = {"state_dict_dbsn": model.dbsn, "state_dict_sigma_mu": model.sigma_mu, "state_dict_sigma_n": model.sigma_n}
    checkpoint = {key: {prefix + k: v for k, v in net.state_dict().items()} for key, net in parts.items()}
    optimizer = torch.optim.Adam(model.sigma_n.parameters(), lr=3e-4)
    checkpoint.update(
        optimizer_state_sigma_n=optimizer.state_dict(),
        schedule_state_sigma_n=torch.optim.lr_scheduler.MultiStepLR(optimizer, [20, 40], 0.1).state_dict(),
        training_params={"step": 80, "start_epoch": 4},
        args=argparse.Namespace(noise_type="gaussian", train_noiseL=[25.0], device_ids=[0]),
    )
    return checkpoint


@pytest.mark.parametrize("n_colors", [1, 3])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_authors_layout_loads_strictly(tmp_path, n_colors, prefix):
    source = small_dbsn(n_colors)
    torch.save(authors_checkpoint(source, prefix), tmp_path / "dbsn_ckpt_e4.pth")
    model = build_model("dbsn", n_colors, mid_ch=8, br1_block_num=1, br2_block_num=1)
    load_weights(model, tmp_path / "dbsn_ckpt_e4.pth")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.rand(1, n_colors, 12, 12)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), source.eval()(x))


def test_another_configuration_is_named():
    checkpoint = authors_checkpoint(build_model("dbsn", 1, mid_ch=16, br1_block_num=2, br2_block_num=1))
    with pytest.raises(ValueError) as err:
        load_weights(small_dbsn(1), checkpoint)
    msg = str(err.value)
    differ = "mid_ch: checkpoint 16, model 8; br1_block_num: checkpoint 2, model 1"
    assert f"a DBSN of another configuration ({differ})" in msg
    assert "br2_block_num" not in msg.split("build the model")[0]
    assert "\n" not in msg and "keys" not in msg  # one line: the options say it, not the keys they change
    with pytest.raises(ValueError, match="noise_type: checkpoint 'multivariate_gaussian', model 'gaussian or poisson"):
        load_weights(small_dbsn(3, noise_type="gaussian"), authors_checkpoint(small_dbsn(3)))
    with pytest.raises(ValueError, match="n_colors: checkpoint 3, model 1"):
        load_weights(small_dbsn(1), authors_checkpoint(small_dbsn(3, noise_type="gaussian")))


def test_partial_checkpoint_is_named():
    checkpoint = authors_checkpoint(small_dbsn(1))
    del checkpoint["state_dict_sigma_mu"], checkpoint["state_dict_sigma_n"]  # a mu pre-training checkpoint
    with pytest.raises(ValueError, match="has no state_dict_sigma_mu, state_dict_sigma_n"):
        load_weights(small_dbsn(1), checkpoint)


def test_our_record_tells_noise_types_apart_and_ignores_map_settings(tmp_path):
    """gaussian and poisson_gaussian nets have the same shapes: only the record tells them apart."""
    source = small_dbsn(1, noise_type="poisson_gaussian", sigma_mu_mid_ch=16, sigma_n_mid_ch=16)
    torch.save(weights_with_architecture(source), tmp_path / "pg.pt")
    same = {"sigma_mu_mid_ch": 16, "sigma_n_mid_ch": 16}
    model = small_dbsn(1, noise_type="poisson_gaussian", gamma=0.9, map_form="trainval", **same)
    load_weights(model, tmp_path / "pg.pt")
    with pytest.raises(ValueError, match="noise_type: checkpoint 'poisson_gaussian', model 'gaussian'"):
        load_weights(small_dbsn(1, **same), tmp_path / "pg.pt")
