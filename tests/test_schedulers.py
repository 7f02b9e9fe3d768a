"""Learning-rate schedules: the official step decay (PyTorch 1.0 trace) and warm-up + cosine (warmup-scheduler 0.3)."""

from __future__ import annotations

import pytest
import torch

from adfnet.engine.schedulers import build_scheduler

# LR used during epochs 1..160 of the official real-noise recipe: GradualWarmupScheduler (warmup-scheduler
# 0.3, multiplier 1, total_epoch 3) chained to CosineAnnealingLR(T_max 157, eta_min 1e-6), Adam lr 1e-4,
# driven as train_denoising.py does (one step before training, one after each epoch). Computed once from the
# package on PyTorch 2.x; the test does not need the package.
OFFICIAL_WARMUP_COSINE = [
    3.333333333333333e-05,
    6.666666666666667e-05,
    1.000000000000000e-04,
    1.000099107067720e-04,
    1.000000000000000e-04,
    9.997027184785683e-05,
    9.992073815327202e-05,
    9.985141874916611e-05,
    9.976234139050964e-05,
    9.965354174321015e-05,
    9.952506336983203e-05,
    9.937695771215416e-05,
    9.920928407057326e-05,
    9.902210958036025e-05,
    9.881550918477988e-05,
    9.858956560508397e-05,
    9.834436930739050e-05,
    9.808001846646161e-05,
    9.779661892639512e-05,
    9.749428415824546e-05,
    9.717313521459060e-05,
    9.683330068106353e-05,
    9.647491662486759e-05,
    9.609812654029615e-05,
    9.570308129127849e-05,
    9.528993905097516e-05,
    9.485886523844650e-05,
    9.441003245242014e-05,
    9.394362040218380e-05,
    9.345981583563096e-05,
    9.295881246448844e-05,
    9.244081088675571e-05,
    9.190601850638686e-05,
    9.135464945024770e-05,
    9.078692448238093e-05,
    9.020307091561385e-05,
    8.960332252054405e-05,
    8.898791943193936e-05,
    8.835710805258974e-05,
    8.771114095464942e-05,
    8.705027677850889e-05,
    8.637478012923723e-05,
    8.568492147063629e-05,
    8.498097701694882e-05,
    8.426322862226462e-05,
    8.353196366766801e-05,
    8.278747494617284e-05,
    8.203006054549013e-05,
    8.126002372867615e-05,
    8.047767281270806e-05,
    7.968332104503619e-05,
    7.887728647816203e-05,
    7.805989184229243e-05,
    7.723146441612080e-05,
    7.639233589578721e-05,
    7.554284226206974e-05,
    7.468332364586029e-05,
    7.381412419197866e-05,
    7.293559192137961e-05,
    7.204807859180789e-05,
    7.115193955695696e-05,
    7.024753362418815e-05,
    6.933522291086685e-05,
    6.841537269937337e-05,
    6.748835129084665e-05,
    6.655452985771926e-05,
    6.561428229510273e-05,
    6.466798507108270e-05,
    6.371601707598398e-05,
    6.275875947066561e-05,
    6.179659553390708e-05,
    6.082991050894614e-05,
    5.985909144923048e-05,
    5.888452706344436e-05,
    5.790660755987253e-05,
    5.692572449016382e-05,
    5.594227059255672e-05,
    5.495663963462998e-05,
    5.396922625564106e-05,
    5.298042580851537e-05,
    5.199063420155007e-05,
    5.100024773989536e-05,
    5.000966296687666e-05,
    4.901927650522193e-05,
    4.802948489825666e-05,
    4.704068445113098e-05,
    4.605327107214203e-05,
    4.506764011421531e-05,
    4.408418621660821e-05,
    4.310330314689949e-05,
    4.212538364332767e-05,
    4.115081925754155e-05,
    4.018000019782589e-05,
    3.921331517286496e-05,
    3.825115123610641e-05,
    3.729389363078806e-05,
    3.634192563568934e-05,
    3.539562841166928e-05,
    3.445538084905274e-05,
    3.352155941592537e-05,
    3.259453800739864e-05,
    3.167468779590515e-05,
    3.076237708258383e-05,
    2.985797114981504e-05,
    2.896183211496411e-05,
    2.807431878539239e-05,
    2.719578651479334e-05,
    2.632658706091169e-05,
    2.546706844470224e-05,
    2.461757481098478e-05,
    2.377844629065118e-05,
    2.295001886447955e-05,
    2.213262422860994e-05,
    2.132658966173578e-05,
    2.053223789406392e-05,
    1.974988697809586e-05,
    1.897985016128187e-05,
    1.822243576059916e-05,
    1.747794703910397e-05,
    1.674668208450737e-05,
    1.602893368982317e-05,
    1.532498923613570e-05,
    1.463513057753475e-05,
    1.395963392826311e-05,
    1.329876975212258e-05,
    1.265280265418225e-05,
    1.202199127483264e-05,
    1.140658818622795e-05,
    1.080683979115815e-05,
    1.022298622439107e-05,
    9.655261256524305e-06,
    9.103892200385145e-06,
    8.569099820016301e-06,
    8.051098242283557e-06,
    7.550094871141041e-06,
    7.066290304588208e-06,
    6.599878254351858e-06,
    6.151045468325507e-06,
    5.719971655796849e-06,
    5.306829415493503e-06,
    4.911784166475847e-06,
    4.534994081904404e-06,
    4.176610025708471e-06,
    3.836775492181417e-06,
    3.515626548526550e-06,
    3.213291780376884e-06,
    2.929892240310396e-06,
    2.665541399381496e-06,
    2.420345101688025e-06,
    2.194401521992121e-06,
    1.987801126411737e-06,
    1.800626636198724e-06,
    1.632952994617830e-06,
    1.484847336939988e-06,
    1.356368963561845e-06,
    1.247569316262368e-06,
    1.158491957605880e-06,
    1.089172553499985e-06,
    1.039638858915185e-06,
    1.009910706771997e-06,
]


def lr_trace(decay_type: str, epochs: int, **kwargs: float) -> list[float]:
    """LR of each epoch when the scheduler is stepped after the optimiser, as the trainer does."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1e-4)
    sched = build_scheduler(opt, decay_type, **kwargs)
    trace = []
    for _ in range(epochs):
        trace.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return trace


@pytest.mark.parametrize("epochs, period", [(1000, 200), (950, 220)])
def test_step_decay_matches_pytorch10_trace(epochs: int, period: int) -> None:
    trace = lr_trace("step", epochs, lr_decay=period, gamma=0.5)
    for epoch, lr in enumerate(trace, start=1):
        assert lr == pytest.approx(1e-4 * 0.5 ** ((epoch - 1) // period), rel=1e-12), epoch
    # spot values of the official logs: RGB 1-200 1e-4, 201-400 5e-5, ...; gray 881-950 6.25e-6
    if period == 200:
        assert (trace[199], trace[200], trace[400], trace[999]) == pytest.approx((1e-4, 5e-5, 2.5e-5, 6.25e-6))
    else:
        assert (trace[219], trace[220], trace[949]) == pytest.approx((1e-4, 5e-5, 6.25e-6))


def test_multistep() -> None:
    trace = lr_trace("step_3_5", 7, gamma=0.1)
    assert trace == pytest.approx([1e-4] * 3 + [1e-5] * 2 + [1e-6] * 2)


def test_warmup_cosine_matches_official_package() -> None:
    trace = lr_trace("warmup_cosine", 160, warmup_epochs=3, t_max=157, lr_min=1e-6)
    assert len(OFFICIAL_WARMUP_COSINE) == 160
    assert trace == pytest.approx(OFFICIAL_WARMUP_COSINE, rel=1e-12, abs=0)


def test_scheduler_state_round_trip() -> None:
    """A scheduler restored from its state_dict continues the same trace (what --resume relies on)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1e-4)
    sched = build_scheduler(opt, "warmup_cosine", t_max=157)
    for _ in range(10):
        opt.step()
        sched.step()
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched2 = build_scheduler(opt2, "warmup_cosine", t_max=157)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == OFFICIAL_WARMUP_COSINE[10]
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(OFFICIAL_WARMUP_COSINE[11], rel=1e-12)


def test_unknown_decay_type() -> None:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    with pytest.raises(ValueError, match="decay_type"):
        build_scheduler(opt, "cosine")
    with pytest.raises(ValueError, match="step_"):
        build_scheduler(opt, "step_a_b")
