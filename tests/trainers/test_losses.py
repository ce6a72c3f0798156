"""DPO losses against the formulas computed by hand (plain Python math) on fixed log-probs."""
import math

import pytest
import torch

from trainers.losses import LossSpec, PairLogps, chosen_nll, dpo_loss, gamma_ref, per_pair_loss

# two pairs: (policy chosen, policy rejected, ref chosen, ref rejected, chosen len, rejected len)
PAIRS = [(-12.0, -15.0, -13.0, -14.0, 4, 6), (-20.0, -9.0, -18.5, -10.0, 8, 3)]


def _logps() -> PairLogps:
    cols = list(zip(*PAIRS))
    f = lambda i: torch.tensor(cols[i], dtype=torch.float64)  # noqa: E731
    return PairLogps(f(0), f(1), f(2), f(3), torch.tensor(cols[4]), torch.tensor(cols[5]))


def _delta(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_sigmoid_is_minus_log_sigmoid_of_beta_delta(beta):
    expected = [-_log_sigmoid(beta * _delta(*p[:4])) for p in PAIRS]
    got = per_pair_loss(_logps(), LossSpec("sigmoid", beta)).tolist()
    assert got == pytest.approx(expected, abs=1e-12)
    # pair 0: delta = (-12+13) - (-15+14) = 2 -> -log sigma(0.2) for beta 0.1
    if beta == 0.1:
        assert got[0] == pytest.approx(math.log(1 + math.exp(-0.2)), abs=1e-12)


def test_label_smoothing_is_conservative_dpo():
    eps, beta = 0.2, 0.1
    expected = [-(1 - eps) * _log_sigmoid(beta * d) - eps * _log_sigmoid(-beta * d)
                for d in (_delta(*p[:4]) for p in PAIRS)]
    got = per_pair_loss(_logps(), LossSpec("sigmoid", beta, label_smoothing=eps)).tolist()
    assert got == pytest.approx(expected, abs=1e-12)


def test_hinge_is_relu_of_one_minus_beta_delta():
    beta = 0.5
    expected = [max(0.0, 1 - beta * _delta(*p[:4])) for p in PAIRS]
    assert expected[0] == 0.0 and expected[1] > 0  # one pair past the margin, one not
    assert per_pair_loss(_logps(), LossSpec("hinge", beta)).tolist() == pytest.approx(expected, abs=1e-12)


def test_ipo_uses_length_normalised_log_ratios():
    beta = 0.1
    expected = []
    for pc, pr, rc, rr, lc, lr in PAIRS:
        expected.append(((pc - rc) / lc - (pr - rr) / lr - 1 / (2 * beta)) ** 2)
    assert per_pair_loss(_logps(), LossSpec("ipo", beta)).tolist() == pytest.approx(expected, abs=1e-12)


def test_rpo_alpha_adds_token_mean_nll_of_chosen():
    beta, alpha = 0.1, 0.7
    pref = sum(-_log_sigmoid(beta * _delta(*p[:4])) for p in PAIRS) / len(PAIRS)
    nll = -(PAIRS[0][0] + PAIRS[1][0]) / (PAIRS[0][4] + PAIRS[1][4])
    assert chosen_nll(_logps()).item() == pytest.approx(nll, abs=1e-12)
    assert dpo_loss(_logps(), LossSpec("sigmoid", beta, rpo_alpha=alpha)).item() == pytest.approx(pref + alpha * nll, abs=1e-12)
    assert dpo_loss(_logps(), LossSpec("sigmoid", beta)).item() == pytest.approx(pref, abs=1e-12)


def test_gamma_is_beta_times_reference_log_ratio():
    lp = _logps()
    assert gamma_ref(lp.ref_chosen, lp.ref_rejected, 0.5).tolist() == pytest.approx([0.5 * (-13 + 14), 0.5 * (-18.5 + 10)])


def test_label_smoothing_rejected_outside_sigmoid():
    with pytest.raises(ValueError, match="sigmoid"):
        LossSpec("ipo", 0.1, label_smoothing=0.1)
    with pytest.raises(ValueError, match="unknown loss_type"):
        LossSpec("kto", 0.1)
