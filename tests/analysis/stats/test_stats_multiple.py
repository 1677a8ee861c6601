"""Benjamini–Hochberg adjusted p-values, against statsmodels."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from analysis.stats.multiple import bh_adjust, bh_reject


def test_it_adjusts_a_worked_example():
    # m = 5: sorted p * m / rank = .005, .02, .0333, .0375, .9 -> running minimum from the top
    adjusted = bh_adjust([0.01, 0.001, 0.02, 0.03, 0.9])
    np.testing.assert_allclose(adjusted, [0.025, 0.005, 0.0333333333, 0.0375, 0.9])


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=60))
def test_it_matches_statsmodels_fdr_bh(pvalues):
    reject, expected, _, _ = multipletests(pvalues, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(bh_adjust(pvalues), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(bh_reject(pvalues, 0.05), reject)


def test_it_leaves_missing_p_values_out_of_the_count():
    adjusted = bh_adjust([0.01, np.nan, 0.04])
    np.testing.assert_allclose(adjusted, [0.02, np.nan, 0.04])
    assert list(bh_reject([0.01, np.nan, 0.04])) == [True, False, True]


def test_it_rejects_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        bh_adjust([0.2, 1.5])
