"""Allocation: balance for 1,000 enrollments per method, reproducibility, concealment,
immutability, and concurrent enrollments on PostgreSQL."""

from __future__ import annotations

import copy
import threading
from collections import Counter

import pytest
from django.db import connection

from studyplatform.participants import allocation as alloc
from studyplatform.participants.models import Allocation
from studyplatform.studies.services import study_create_from_protocol
from tests.factories import launch_study


def launch_with(doc, owner, **allocation):
    doc = copy.deepcopy(doc)
    doc["study"]["slug"] = "alloc-" + allocation["method"].replace("_", "-")
    doc["allocation"] = {**allocation}
    doc["study"].pop("target_enrollment", None)
    study = study_create_from_protocol(doc=doc, author=owner)
    study = launch_study(study, owner)
    return study


def assert_balanced_at_every_point(arms_in_order: list[str], bound: int) -> None:
    counts: Counter = Counter()
    for i, arm in enumerate(arms_in_order):
        counts[arm] += 1
        spread = max(counts.values()) - min(counts.get(a, 0) for a in ("legacy", "current"))
        assert spread <= bound, f"imbalance {spread} > {bound} after {i + 1} allocations"


@pytest.mark.django_db
def test_permuted_blocks_stay_within_the_block_bound_for_1000_enrollments(owner, rct_doc, enroll):
    study = launch_with(rct_doc, owner, method="permuted_blocks", block_sizes=[2, 4, 6])
    for i in range(1000):
        enroll(study, email=f"b{i}@example.org", signature_name="x")
    arms = list(
        Allocation.objects.filter(participant__study=study)
        .order_by("sequence_number")
        .values_list("arm__key", flat=True)
    )
    assert len(arms) == 1000
    bound = alloc.max_imbalance(
        [2, 4, 6], [alloc.ArmWeight("legacy", 1), alloc.ArmWeight("current", 1)]
    )
    assert bound == 3
    assert_balanced_at_every_point(arms, bound)
    assert abs(arms.count("legacy") - arms.count("current")) <= bound


@pytest.mark.django_db
def test_stratified_blocks_balance_within_each_stratum(owner, rct_doc, enroll):
    study = launch_with(
        rct_doc, owner, method="stratified_blocks", block_sizes=[4], strata=["gender"]
    )
    genders = ["woman", "man", "other"]
    for i in range(1000):
        answers = {"age": 30, "uses_chatbots": True, "gender": genders[(i * 7) % 3]}
        enroll(study, email=f"s{i}@example.org", answers=answers)
    for gender in genders:
        arms = list(
            Allocation.objects.filter(participant__study=study, stratum=f"gender={gender}")
            .order_by("sequence_number")
            .values_list("arm__key", flat=True)
        )
        assert len(arms) > 300
        assert_balanced_at_every_point(arms, 2)


def test_simple_randomization_follows_the_weights_over_1000_draws():
    arms = [alloc.ArmWeight("legacy", 1), alloc.ArmWeight("current", 3)]
    draws = Counter(alloc.simple_draw("seed", i, arms) for i in range(1000))
    # 750 expected; binomial sd ~13.7, so +-60 is over 4 sd
    assert 690 <= draws["current"] <= 810


@pytest.mark.django_db
def test_simple_randomization_through_enrollment(owner, rct_doc, enroll):
    study = launch_with(rct_doc, owner, method="simple")
    for i in range(200):
        enroll(study, email=f"r{i}@example.org")
    counts = Counter(
        Allocation.objects.filter(participant__study=study).values_list("arm__key", flat=True)
    )
    assert sum(counts.values()) == 200 and 60 <= counts["legacy"] <= 140


def test_the_sequence_is_reproducible_from_the_seed_and_differs_across_seeds():
    arms = [alloc.ArmWeight("a", 1), alloc.ArmWeight("b", 1)]
    first = [alloc.arm_at("seed-1", "", i, arms, [4, 6])[0] for i in range(100)]
    again = [alloc.arm_at("seed-1", "", i, arms, [4, 6])[0] for i in range(100)]
    other = [alloc.arm_at("seed-2", "", i, arms, [4, 6])[0] for i in range(100)]
    assert first == again and first != other


def test_weighted_blocks_keep_the_ratio_in_every_block():
    arms = [alloc.ArmWeight("a", 2), alloc.ArmWeight("b", 1)]
    for block_no in range(50):
        block = alloc.make_block("s", "", block_no, arms, [3, 6])
        assert block.count("a") == 2 * block.count("b")


@pytest.mark.django_db
def test_an_allocation_cannot_be_changed(recruiting_study, enroll):
    allocation = enroll(recruiting_study).allocation
    allocation.stratum = "tampered"
    with pytest.raises(ValueError, match="immutable"):
        allocation.save()


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrollments_keep_blocks_balanced(owner, rct_doc, enroll):
    if connection.vendor != "postgresql":
        pytest.skip("row locks under real concurrency are a PostgreSQL property")
    study = launch_with(rct_doc, owner, method="permuted_blocks", block_sizes=[2, 4])
    errors: list[Exception] = []

    def worker(offset: int) -> None:
        try:
            for i in range(15):
                enroll(study, email=f"c{offset}-{i}@example.org")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = list(
        Allocation.objects.filter(participant__study=study)
        .order_by("sequence_number")
        .values_list("sequence_number", "arm__key")
    )
    assert [n for n, _ in rows] == list(range(120))  # no position used twice or skipped
    assert_balanced_at_every_point([a for _, a in rows], 2)
