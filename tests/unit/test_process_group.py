"""How one process takes its part of data-parallel training: the group it
finds in its environment, its share of each global batch, and the checks
that ranks trained one model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lockgate.families import family_for
from lockgate.training.distributed import (
    DistributedTrainingError,
    RankOutcome,
    agree_on_resume_epoch,
    outcome_path,
    read_outcomes,
)
from lockgate.training.process_group import (
    ProcessGroup,
    ProcessGroupError,
    batch_rows,
    epoch_order,
    shard_rows,
    sharded_batches,
)


def test_the_group_is_read_from_keras_distribution_variables():
    env = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "trainer-0.trainers:1234,trainer-1.trainers:1234",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "1",
    }
    group = ProcessGroup.from_environment(env)
    assert group == ProcessGroup("trainer-0.trainers:1234", 2, 1)
    assert ProcessGroup.from_environment(group.environment()) == group


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, "KERAS_DISTRIBUTION_PROCESS_ID not set"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "2",
          "KERAS_DISTRIBUTION_JOB_ADDRESSES": "h:1"}, "rank 2 is not in a group of 2"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "two", "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "must be integers"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "host:port"),
    ],
)
def test_an_unusable_group_is_refused_with_the_reason(env, complaint):
    with pytest.raises(ProcessGroupError, match=complaint):
        ProcessGroup.from_environment(env)


def test_one_process_needs_no_coordinator():
    group = ProcessGroup.from_environment({"KERAS_DISTRIBUTION_NUM_PROCESSES": "1", "KERAS_DISTRIBUTION_PROCESS_ID": "0"})
    assert group.processes == 1 and group.rank == 0


@pytest.mark.parametrize(("rows", "processes", "devices"), [(32, 2, 1), (31, 2, 1), (30, 4, 1), (32, 2, 2), (7, 2, 2)])
def test_the_ranks_shares_are_equal_and_together_the_batch_in_its_order(rows, processes, devices):
    batch = np.random.default_rng(0).permutation(100)[:rows]
    shares = [shard_rows(batch, rank, processes, devices) for rank in range(processes)]
    assert len({len(share) for share in shares}) == 1
    assert len(shares[0]) % devices == 0
    kept = (rows // (processes * devices)) * processes * devices
    np.testing.assert_array_equal(np.concatenate(shares), batch[:kept])


def test_training_drops_the_last_partial_batch_and_validation_keeps_it():
    order = np.arange(70)
    assert [len(b) for b in batch_rows(order, 32, drop_remainder=True)] == [32, 32]
    assert [len(b) for b in batch_rows(order, 32, drop_remainder=False)] == [32, 32, 6]
    # Fewer rows than one global batch still make one batch.
    assert [len(b) for b in batch_rows(np.arange(10), 32, drop_remainder=True)] == [10]


def test_every_epoch_has_its_own_order_and_ranks_agree_on_it():
    first, second = epoch_order(50, seed=7, epoch=0, shuffle=True), epoch_order(50, seed=7, epoch=1, shuffle=True)
    assert sorted(first) == list(range(50)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, epoch_order(50, seed=7, epoch=0, shuffle=True))
    np.testing.assert_array_equal(epoch_order(5, seed=7, epoch=3, shuffle=False), np.arange(5))


def _epochs(dataset, count):
    seen = []
    for _ in range(count):
        seen.append([dataset[i][1] for i in range(len(dataset))])
        dataset.on_epoch_end()
    return seen


def test_two_ranks_feed_the_global_batches_one_process_would():
    x = np.arange(200, dtype="float32").reshape(100, 2)
    y = np.arange(100)
    single = sharded_batches(x, y, 16, ProcessGroup("", 1, 0), 1, seed=3, shuffle=True)
    ranks = [sharded_batches(x, y, 16, ProcessGroup("h:1", 2, r), 1, seed=3, shuffle=True) for r in range(2)]
    alone, together = _epochs(single, 3), [_epochs(rank, 3) for rank in ranks]
    assert len(alone[0]) == 100 // 16
    for epoch in range(3):
        for batch in range(len(alone[epoch])):
            np.testing.assert_array_equal(
                np.concatenate([together[0][epoch][batch], together[1][epoch][batch]]), alone[epoch][batch]
            )
    x_rows, y_rows = ranks[1][0]
    np.testing.assert_array_equal(x_rows[:, 0] / 2, y_rows)  # features and labels stay paired


def test_a_resumed_rank_continues_with_the_epochs_order():
    x, y = np.zeros((64, 1)), np.arange(64)
    uninterrupted = _epochs(sharded_batches(x, y, 8, ProcessGroup("h:1", 2, 0), 1, seed=1, shuffle=True), 3)
    resumed = _epochs(sharded_batches(x, y, 8, ProcessGroup("h:1", 2, 0), 1, seed=1, shuffle=True, start_epoch=2), 1)
    np.testing.assert_array_equal(np.concatenate(resumed[0]), np.concatenate(uninterrupted[2]))


def _outcome(rank: int, digest: str) -> RankOutcome:
    return RankOutcome(
        rank=rank, processes=2, weights_sha256=digest, history={"loss": [1.0]}, epochs_run=1, resumed_from_epoch=0,
        seconds=1.0, examples_per_second=10.0, placement="test", global_batch=32, examples_per_epoch=320,
        learning_rate=1e-3,
    )


def test_ranks_with_different_weights_fail_closed(tmp_path):
    for rank, digest in enumerate(["a" * 64, "b" * 64]):
        outcome_path(tmp_path, rank).write_text(_outcome(rank, digest).model_dump_json())
    with pytest.raises(DistributedTrainingError, match="different weights"):
        read_outcomes(tmp_path, 2)
    outcome_path(tmp_path, 1).write_text(_outcome(1, "a" * 64).model_dump_json())
    assert [o.rank for o in read_outcomes(tmp_path, 2)] == [0, 1]


def test_a_rank_that_reported_nothing_fails_the_training(tmp_path):
    outcome_path(tmp_path, 0).write_text(_outcome(0, "a" * 64).model_dump_json())
    with pytest.raises(DistributedTrainingError, match=r"ranks \[1\] finished without"):
        read_outcomes(tmp_path, 2)


def _checkpoint(folder, epoch, weights=True):
    """A checkpoint as lockgate.training.checkpoints writes it: the metadata names the epoch's weights file."""
    import h5py

    folder.mkdir(parents=True)
    name = f"epoch-{epoch}.weights.h5"
    (folder / "training_metadata.json").write_text(json.dumps({"epoch": epoch, "weights": name}))
    if weights:
        with h5py.File(folder / name, "w") as file:
            file["epoch"] = epoch


def _epoch_in(folder):
    import h5py

    from lockgate.training.checkpoints import checkpoint_weights

    with h5py.File(checkpoint_weights(folder), "r") as file:
        return int(file["epoch"][()])


def test_ranks_resume_together_from_the_newest_checkpoint(tmp_path):
    _checkpoint(tmp_path / "same" / "rank-0", 3)
    _checkpoint(tmp_path / "same" / "rank-1", 3)
    said = []
    assert agree_on_resume_epoch(tmp_path / "same", 2, said.append) == 3
    assert said == ["resuming all 2 ranks after epoch 3"]
    # Rank 1 was killed before it wrote epoch 3's checkpoint: it takes rank 0's.
    _checkpoint(tmp_path / "behind" / "rank-0", 3)
    _checkpoint(tmp_path / "behind" / "rank-1", 2)
    assert agree_on_resume_epoch(tmp_path / "behind", 2, said.append) == 3
    assert _epoch_in(tmp_path / "behind" / "rank-1") == 3
    assert "ranks [1] hold older or unreadable checkpoints ([3, 2])" in said[1]


def test_a_half_written_checkpoint_is_replaced_by_another_ranks(tmp_path):
    # A file cut short (a disk that lost it): named by the metadata, unreadable.
    _checkpoint(tmp_path / "rank-0", 6, weights=False)
    (tmp_path / "rank-0" / "epoch-6.weights.h5").write_bytes(b"")
    _checkpoint(tmp_path / "rank-1", 6)
    said = []
    assert agree_on_resume_epoch(tmp_path, 2, said.append) == 6
    assert _epoch_in(tmp_path / "rank-0") == 6 and "(['unreadable', 6])" in said[0]


def test_without_a_readable_checkpoint_every_rank_starts_over(tmp_path):
    _checkpoint(tmp_path / "rank-0", 2, weights=False)
    said = []
    assert agree_on_resume_epoch(tmp_path, 2, said.append) == 0
    assert not tmp_path.exists() and said == ["no rank holds a readable checkpoint: training starts over"]
    assert agree_on_resume_epoch(tmp_path / "none", 2, said.append) == 0 and len(said) == 1


@pytest.mark.parametrize("family", ["image", "tabular", "regression"])
def test_families_that_train_on_jax_use_every_worker(family):
    from lockgate.training.fit import training_processes

    assert training_processes(family_for(family), 4) == (4, None)


def test_text_models_take_token_ids_so_any_backend_and_several_processes_train_them():
    from lockgate.training.fit import training_processes

    # Tokenising moved out of the graph (lockgate/core/tokens.py): no TextVectorization, no TensorFlow-only layer.
    assert not family_for("text").needs_tensorflow
    assert training_processes(family_for("text"), 4) == (4, None)
