"""Formula parser and design matrices."""

import re

import numpy as np
import pandas as pd
import patsy
import pytest

from analysis.stats.formula import design_matrices, parse_formula


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "y": [1.0, 2.0, 3.5, 4.0, 5.5, 7.0],
            "t": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
            "x": [0.5, -1.0, 2.0, 1.5, 0.0, -0.5],
            "arm": ["b", "a", "c", "a", "b", "c"],
            "a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "b": [2.0, 1.0, 0.0, 1.0, 2.0, 3.0],
            "flag": [True, False, True, False, False, True],
            "visit": [1, 2, 3, 3, 2, 1],
        }
    )


def test_it_builds_main_effects_dummies_and_interactions(frame):
    design = design_matrices("y ~ t + x + C(arm) + t:x + a*b", frame)
    assert design.names == [
        "Intercept",
        "C(arm)[T.b]",
        "C(arm)[T.c]",
        "t",
        "x",
        "t:x",
        "a",
        "b",
        "a:b",
    ]
    X = design.X
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1], [1, 0, 0, 0, 1, 0])  # arm == "b"; "a" is reference
    np.testing.assert_array_equal(X[:, 2], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(X[:, 5], frame["t"] * frame["x"])
    np.testing.assert_array_equal(X[:, 8], frame["a"] * frame["b"])
    np.testing.assert_array_equal(design.y, frame["y"])
    assert design.n_dropped == 0


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ t * C(arm)",
        "y ~ x + C(arm) + x:C(arm)",
        "y ~ 0 + C(arm) + t",
        "y ~ t + x - 1",
        "y ~ (t + x):C(arm) + t + x",
        "y ~ arm + flag",
        "y ~ t * x * a",
        "y ~ x:C(arm)",
        "y ~ 0 + C(arm) + C(flag)",
        "y ~ C(arm) * flag",
        # Two many-level categoricals: within the interaction the first factor varies fastest.
        "y ~ C(arm) * C(visit)",
        "y ~ t:C(arm):C(visit) + t + t:C(arm) + t:C(visit)",
    ],
)
def test_it_matches_patsy_names_and_values(frame, formula):
    ours = design_matrices(formula, frame)
    _, theirs = patsy.dmatrices(formula, frame, return_type="dataframe")
    assert ours.names == list(theirs.columns)
    np.testing.assert_allclose(ours.X, theirs.to_numpy())


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("~ t", ["Intercept", "t"]),
        ("~ 1 + t", ["Intercept", "t"]),
        ("~ 0 + t", ["t"]),
        ("~ 1", ["Intercept"]),
    ],
)
def test_it_parses_one_sided_random_effect_formulas(frame, formula, names):
    design = design_matrices(formula, frame)
    assert design.y is None
    assert design.names == names


def test_it_drops_rows_with_missing_values_in_used_columns_only(frame):
    frame.loc[1, "x"] = np.nan
    frame.loc[2, "y"] = np.nan
    frame.loc[3, "a"] = np.nan  # not used below: the row stays
    design = design_matrices("y ~ t + x", frame)
    assert design.n_dropped == 2
    assert design.X.shape == (4, 3)
    np.testing.assert_array_equal(design.kept, [True, False, False, True, True, True])


def test_it_sees_formula_terms_and_their_order():
    parsed = parse_formula("score ~ a:b + a + C(arm)")
    assert parsed.response == "score"
    assert parsed.intercept
    assert [[f.label for f in term] for term in parsed.terms] == [["a", "b"], ["a"], ["C(arm)"]]
    assert parsed.columns == ["score", "a", "b", "arm"]


def test_it_asks_for_main_effects_of_a_bare_categorical_interaction(frame):
    with pytest.raises(ValueError, match=re.escape("add main effects for C(arm), flag")):
        design_matrices("y ~ C(arm):flag", frame)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ t +", "formula 'y ~ t +': a term is expected after '+'"),
        ("y t", "formula 'y t': missing '~'"),
        ("y ~ log(t)", "unsupported function log(); only C(column) is supported"),
        ("y ~ t $ x", "unexpected character '$'"),
        ("y ~ C(arm, b)", "C(arm ...) takes exactly one column name"),
        ("y ~ (t + x", "unbalanced parentheses"),
        ("y ~ t:", "a term is expected after ':'"),
        ("y ~ y + t", "response 'y' also appears on the right-hand side"),
        ("y ~ 2 + t", "unexpected number '2'"),
        ("", "formula is empty"),
    ],
)
def test_it_rejects_malformed_formulas_naming_the_problem(formula, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_formula(formula)


def test_it_names_an_unknown_column(frame):
    with pytest.raises(ValueError, match="unknown column 'wave' in formula 'y ~ wave'"):
        design_matrices("y ~ wave", frame)


def test_it_rejects_a_categorical_with_a_single_level(frame):
    frame["site"] = "berlin"
    with pytest.raises(ValueError, match=r"column 'site' .* has 1 level"):
        design_matrices("y ~ C(site)", frame)


def test_it_rejects_a_text_response(frame):
    with pytest.raises(ValueError, match="response column 'arm' is not numeric"):
        design_matrices("arm ~ t", frame)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        # formulaic would accept each of these: Python calls and expressions it evaluates, and
        # operators outside the platform's subset. None may reach it.
        ("y ~ np.log(t)", "unsupported function np.log(); only C(column) is supported"),
        ("y ~ I(t)", "unsupported function I(); only C(column) is supported"),
        ("y ~ {t + 1}", "unexpected character '{'"),
        ("y ~ `t`", "unexpected character '`'"),
        ("y ~ t**2", "a term is expected after '*'"),
        ("y ~ a/b", "unexpected character '/'"),
        ("y ~ t | arm", "unexpected character '|'"),
        ("y ~ (t + 0):x", "'0' is only allowed at the top level of a formula"),
        ("y ~ t:1", "'1' cannot be part of an interaction"),
        ("y ~ t x", "an operator is expected before 'x'"),
        ("y + x ~ t", "the response must be a single column name before '~'"),
        ("y ~", "nothing after '~'"),
    ],
)
def test_it_refuses_what_only_formulaic_would_accept(formula, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_formula(formula)


def test_it_codes_observed_levels_in_sorted_order_whatever_the_categorical_declares(frame):
    # given: a pandas categorical declaring its levels in another order, one of them unused
    frame["site"] = pd.Categorical(
        ["s2", "s1", "s3", "s1", "s2", "s3"], categories=["s3", "s1", "s2", "s4"]
    )
    # when
    design = design_matrices("y ~ site + C(site):t", frame)
    # then: the first sorted observed level is the reference, and no column for "s4"
    assert design.names == [
        "Intercept",
        "site[T.s2]",
        "site[T.s3]",
        "C(site)[s1]:t",
        "C(site)[s2]:t",
        "C(site)[s3]:t",
    ]
    np.testing.assert_array_equal(design.X[:, 1], [1, 0, 0, 0, 1, 0])


def test_it_rejects_infinite_values(frame):
    frame.loc[2, "x"] = np.inf
    with pytest.raises(ValueError, match="column 'x' contains infinite values"):
        design_matrices("y ~ x", frame)
