"""hmm_regime's forward filter: hmmlearn's own posterior at the last bar (where filtering and smoothing
agree), and not its smoothed posterior before it (which reads later bars)."""

from __future__ import annotations

import numpy as np
from hmmlearn.hmm import GaussianHMM

from treum.zoo.hmm_regime import forward_filter


def test_the_forward_filter_agrees_with_hmmlearn_at_the_end_and_never_reads_ahead():
    rng = np.random.default_rng(0)
    calm = rng.normal([0.05, -4.6], [0.5, 0.3], size=(300, 2))  # overlapping states: switches are uncertain
    storm = rng.normal([-0.1, -4.1], [0.7, 0.3], size=(100, 2))
    x = np.vstack([calm, storm, calm[:100]])
    hmm = GaussianHMM(n_components=2, covariance_type="full", n_iter=100, random_state=0).fit(x)
    args = (hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_)
    filtered = forward_filter(x, *args)
    smoothed = hmm.predict_proba(x)
    assert np.allclose(filtered.sum(axis=1), 1.0)
    assert np.allclose(filtered[-1], smoothed[-1], atol=1e-6)  # the last bar: nothing later to read
    assert np.abs(filtered[:-1] - smoothed[:-1]).max() > 1e-3  # earlier: smoothing looked ahead, we did not
    for t in (50, 320, 450):  # cutting the series after t changes nothing up to t
        assert np.allclose(forward_filter(x[: t + 1], *args), filtered[: t + 1])
