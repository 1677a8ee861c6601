"""Randomized allocation sequences, reproducible from the study's secret seed. Pure Python.

- simple: each allocation is an independent weighted draw.
- permuted_blocks: the sequence is a chain of blocks; each block holds every arm in proportion
  to its weight and is shuffled. Block sizes are drawn from the protocol's list (random block
  sizes make the next allocation harder to guess at the end of a block).
- stratified_blocks: a separate block sequence per stratum (combination of screener answers).

Every draw uses a `random.Random` seeded from SHA-256 of (seed, stratum, block or position), so
the whole sequence can be regenerated for an audit without storing it, and concurrent
enrollments only need to agree on "the next position", which the database serializes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

# The protocol schema's maximum for allocation.block_sizes items.
MAX_BLOCK_SIZE = 1000


@dataclass(frozen=True)
class ArmWeight:
    key: str
    weight: int


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest, "big"))


def default_block_sizes(arms: list[ArmWeight]) -> list[int]:
    total = sum(a.weight for a in arms)
    return [2 * total]


def make_block(
    seed: str, stratum: str, block_no: int, arms: list[ArmWeight], block_sizes: list[int]
) -> list[str]:
    """Block number `block_no` of a stratum's sequence: arm keys in allocation order."""
    rng = _rng(seed, stratum, "block", block_no)
    size = block_sizes[0] if len(block_sizes) == 1 else rng.choice(block_sizes)
    total = sum(a.weight for a in arms)
    # Bounded even for protocols stored before the schema's maximum: a block of 10,000,000
    # cost seconds and 120 MB per enrollment. At least one repetition, or the walk never ends.
    reps = max(1, min(size, MAX_BLOCK_SIZE) // total)
    block = [a.key for a in arms for _ in range(a.weight * reps)]
    rng.shuffle(block)
    return block


def simple_draw(seed: str, position: int, arms: list[ArmWeight]) -> str:
    rng = _rng(seed, "simple", position)
    return rng.choices([a.key for a in arms], weights=[a.weight for a in arms])[0]


@dataclass(frozen=True)
class BlockCursor:
    """Where position `position` of a stratum's block sequence falls."""

    block_no: int
    block_start: int


def arm_at(
    seed: str,
    stratum: str,
    position: int,
    arms: list[ArmWeight],
    block_sizes: list[int],
    cursor: BlockCursor | None = None,
) -> tuple[str, BlockCursor]:
    """The arm at `position` of a block sequence, walking forward from `cursor` (or the start)."""
    cursor = cursor or BlockCursor(0, 0)
    if position < cursor.block_start:
        cursor = BlockCursor(0, 0)
    while True:
        block = make_block(seed, stratum, cursor.block_no, arms, block_sizes)
        if position < cursor.block_start + len(block):
            return block[position - cursor.block_start], cursor
        cursor = BlockCursor(cursor.block_no + 1, cursor.block_start + len(block))


def stratum_key(strata: list[str], answers: dict) -> str:
    """A readable stratum label such as "gender=woman"; empty when not stratified."""
    return "&".join(f"{name}={answers.get(name)}" for name in strata)


def max_imbalance(block_sizes: list[int], arms: list[ArmWeight]) -> int:
    """How far two equal-weight arms' counts can drift apart at any point of a block sequence.

    Counts are equal at every block boundary; inside a block an arm can be at most its whole
    share of the block ahead of another.
    """
    total = sum(a.weight for a in arms)
    return min(max(block_sizes), MAX_BLOCK_SIZE) * max(a.weight for a in arms) // total


def max_level_imbalance(
    block_sizes: list[int], arms: list[ArmWeight], arm_levels: dict[str, dict[str, str]]
) -> int:
    """How far two equally weighted levels of one factor can drift apart in a factorial design.

    In a factorial protocol every arm is one cell (a combination of levels), so a block that
    holds every arm in proportion to its weight holds every level of every factor in proportion
    to the summed weight of its cells: level counts are equal at every block boundary, and inside
    a block a level can be at most its whole share of the block ahead of another.
    """
    total = sum(a.weight for a in arms)
    reps = max(1, min(max(block_sizes), MAX_BLOCK_SIZE) // total)
    shares: dict[tuple[str, str], int] = {}
    for arm in arms:
        for factor, level in arm_levels.get(arm.key, {}).items():
            shares[(factor, level)] = shares.get((factor, level), 0) + arm.weight
    return reps * max(shares.values(), default=0)
