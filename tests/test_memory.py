"""The training memory of "Learning to Remember Rare Events": lookups, the margin loss, the update rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voicewatch.training.memory import Memory


def unit(*rows: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def memory_of(keys: torch.Tensor, values: list[int], ages: list[int]) -> Memory:
    memory = Memory(len(keys), keys.shape[1])
    memory.keys, memory.values, memory.ages = keys.clone(), torch.tensor(values), torch.tensor(ages)
    return memory


def test_a_miss_is_written_into_the_oldest_slot_and_every_other_slot_ages() -> None:
    memory = memory_of(unit([1, 0], [0, 1], [-1, 0]), [0, 1, 2], [3, 9, 1])
    memory.update(unit([0.9, 0.1]), torch.tensor([5]))  # nearest key (label 0) is the wrong speaker
    assert memory.values.tolist() == [0, 5, 2] and memory.ages.tolist() == [4, 0, 2]
    assert torch.allclose(memory.keys[1], unit([0.9, 0.1])[0])


def test_a_hit_moves_the_nearest_key_towards_the_query_and_makes_it_young() -> None:
    memory = memory_of(unit([1, 0], [0, 1]), [0, 1], [4, 2])
    memory.update(unit([0.3, 1]), torch.tensor([1]))
    assert memory.values.tolist() == [0, 1] and memory.ages.tolist() == [5, 0]
    assert torch.allclose(memory.keys[1], F.normalize(unit([0, 1])[0] + unit([0.3, 1])[0], dim=0))
    assert memory.keys[1].norm().item() == pytest.approx(1.0)


def test_the_loss_is_the_margin_between_the_nearest_right_and_wrong_keys() -> None:
    memory = memory_of(unit([1, 0], [0, 1], [0.8, 0.6]), [0, 1, 1], [0, 0, 0])
    query = unit([1, 0]).requires_grad_()
    loss = memory.loss(query, torch.tensor([1]), margin=0.3)
    assert loss.item() == pytest.approx(0.3 + 1.0 - 0.8)  # wrong key cos 1.0, best right key cos 0.8
    loss.backward()
    assert query.grad is not None and memory.keys.grad is None
    assert memory.loss(unit([0.8, 0.6]), torch.tensor([1]), margin=0.1).item() == 0.0  # right key wins by 0.2
    assert memory.loss(unit([1, 0]), torch.tensor([7]), margin=0.3).item() == 0.0  # speaker 7 not in memory yet


def test_more_misses_than_slots_keep_the_last_ones() -> None:
    memory = Memory(2, 2, generator=torch.Generator().manual_seed(0))
    memory.update(unit([1, 0], [0, 1], [-1, 0]), torch.tensor([4, 5, 6]))
    assert sorted(memory.values.tolist()) == [5, 6]
