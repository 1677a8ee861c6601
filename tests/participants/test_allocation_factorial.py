"""Allocation in factorial designs: blocks hold every cell of the full design, so every level of
every factor stays balanced (property-based: any design, weights, block sizes, seed, stratum)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyplatform.participants import allocation as alloc
from studyplatform.participants.models import Allocation
from studyplatform.studies.services import study_create_from_protocol
from tests.factories import launch_study


@st.composite
def factorial_designs(draw):
    """(cells as ArmWeight, {cell: {factor: level}}, block sizes, seed, stratum)."""
    n_levels = draw(st.lists(st.integers(2, 3), min_size=1, max_size=3))
    factors = {f"f{i}": [f"l{j}" for j in range(n)] for i, n in enumerate(n_levels)}
    combos = list(itertools.product(*factors.values()))
    # Equal weights within a design, or per-cell weights (an unbalanced design on purpose).
    if draw(st.booleans()):
        weights = [draw(st.integers(1, 2))] * len(combos)
    else:
        weights = draw(st.lists(st.integers(1, 3), min_size=len(combos), max_size=len(combos)))
    arms, levels = [], {}
    for combo, weight in zip(combos, weights, strict=True):
        key = "_".join(combo)
        arms.append(alloc.ArmWeight(key, weight))
        levels[key] = dict(zip(factors, combo, strict=True))
    total = sum(weights)
    sizes = draw(st.lists(st.integers(1, 3).map(lambda k: k * total), min_size=1, max_size=3))
    seed = draw(st.text(min_size=1, max_size=8))
    stratum = draw(st.sampled_from(["", "gender=woman", "gender=man&age=30"]))
    return arms, levels, sizes, seed, stratum


@settings(max_examples=60, deadline=None)
@given(factorial_designs())
def test_every_block_holds_every_cell_in_proportion_to_its_weight(design):
    arms, _levels, sizes, seed, stratum = design
    total = sum(a.weight for a in arms)
    for block_no in range(4):
        block = Counter(alloc.make_block(seed, stratum, block_no, arms, sizes))
        reps = sum(block.values()) // total
        assert sum(block.values()) in sizes
        assert block == {a.key: a.weight * reps for a in arms}


@settings(max_examples=60, deadline=None)
@given(factorial_designs())
def test_factor_levels_balance_at_block_ends_and_drift_within_the_bound(design):
    arms, levels, sizes, seed, stratum = design
    weight = {a.key: a.weight for a in arms}
    # the share each level is due: the summed weight of its cells
    due: Counter = Counter()
    for key, cell in levels.items():
        for factor_level in cell.items():
            due[factor_level] += weight[key]
    bound = alloc.max_level_imbalance(sizes, arms, levels)
    counts: Counter = Counter()
    cursor = None
    boundaries = set()
    for position in range(120):
        key, cursor = alloc.arm_at(seed, stratum, position, arms, sizes, cursor)
        boundaries.add(cursor.block_start)
        for factor_level in levels[key].items():
            counts[factor_level] += 1
        for factor in levels[key]:
            factor_levels = [fl for fl in due if fl[0] == factor]
            # levels due equal shares may drift apart by at most the bound
            equal = [fl for fl in factor_levels if due[fl] == due[factor_levels[0]]]
            if len(equal) == len(factor_levels):
                spread = max(counts[fl] for fl in equal) - min(counts[fl] for fl in equal)
                assert spread <= bound
    # and at the start of every block, each level has exactly its share of the blocks before
    counts.clear()
    cursor = None
    for position in range(120):
        if position in boundaries and position:
            per_unit = {fl: counts[fl] / due[fl] for fl in due}
            assert len(set(per_unit.values())) == 1, per_unit
        key, cursor = alloc.arm_at(seed, stratum, position, arms, sizes, cursor)
        for factor_level in levels[key].items():
            counts[factor_level] += 1


@pytest.mark.django_db
def test_enrollment_in_a_factorial_study_fills_every_cell_of_each_block(owner, rct_doc, enroll):
    # given: a 2 x 3 design whose six arms are generated, blocks of 6 or 12
    doc = rct_doc
    template = {k: v for k, v in doc.pop("arms")[0].items() if k not in ("key", "label")}
    doc["factors"] = [
        {"key": "tone", "levels": [{"key": "neutral"}, {"key": "warm"}]},
        {"key": "task", "levels": [{"key": "open"}, {"key": "personal"}, {"key": "other"}]},
    ]
    doc["arms_from_factors"] = template
    doc["allocation"] = {"method": "permuted_blocks", "block_sizes": [6, 12]}
    doc["study"].pop("target_enrollment", None)
    study = launch_study(study_create_from_protocol(doc=doc, author=owner), owner)
    # when: 36 people enroll
    for i in range(36):
        enroll(study, email=f"f{i}@example.org", signature_name="x")
    rows = list(
        Allocation.objects.filter(participant__study=study)
        .order_by("sequence_number")
        .values_list("block_number", "arm__key")
    )
    # then: every completed block holds all six cells equally often
    by_block: dict[int, Counter] = {}
    for block_no, key in rows:
        by_block.setdefault(block_no, Counter())[key] += 1
    # (the last block may still be filling)
    complete = [by_block[b] for b in sorted(by_block)[:-1]]
    assert complete
    for counts in complete:
        assert sum(counts.values()) in (6, 12)
        assert len(counts) == 6 and len(set(counts.values())) == 1
