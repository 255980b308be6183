"""strategy="fsdp": a small Transformer trained by 2 processes with FSDP2 (gloo, CPU), against DDP, killed and resumed."""

import json

import pytest
import torch

import trainwell
from trainwell.distributed.fsdp import units
from trainwell.distributed.shards import consolidate
from trainwell.files.checkpoint import latest_checkpoint, verify
from trainwell.files.manifest import committed_checkpoints

from ..distributed_children import data, model, rank_record, rank_weights

COMPARED = {
    "reference_batch_size": 32,
    "early_stopping_patience": None,
    "restore_best_weights": True,  # the default: early stopping keeps sharded best weights in every checkpoint
    "seed": 0,
    "log_every_steps": 3,
    "checkpoint_every_steps": 5,
    "max_nonfinite_steps": 3,
}
# 8 steps an epoch; a validation set of 59 in batches of 29: rank 0 validates 2 batches, rank 1 one.
# Steps 11 to 13 go bad: at the third (step 12 done) training rolls back to the checkpoint of epoch 1 (step 8), read from its pieces.
SPEC = {
    "model": "transformer",
    "epochs": 2,
    "batch_size": 16,
    "val_samples": 59,
    "val_batch_size": 29,
    "bad_steps": [10, 11, 12],
}
FSDP = {**SPEC, "options": {**COMPARED, "strategy": "fsdp"}}
D_MODEL = 16


@pytest.fixture(scope="module")
def fsdp_run(launcher, tmp_path_factory):
    """The FSDP run never interrupted: its out directory and run directory."""
    root = tmp_path_factory.mktemp("fsdp")
    assert launcher.run(2, {**FSDP, "out": str(root / "out"), "run_dir": str(root / "run")}) == [0, 0]
    return root


def _outputs(weights):
    network = model(kind="transformer")
    network.load_state_dict(weights)
    network.eval()
    _, _, val_x, _ = data()
    with torch.no_grad():
        return network(val_x.view(-1, 4, 2))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_fsdp_trains_as_ddp_does_within_float_tolerance_and_writes_sharded_checkpoints(launcher, fsdp_run, tmp_path):
    """Weights within 1e-6 of DDP's (one exception, below), the same losses and outputs, the same rollback; both
    processes end with the whole weights; checkpoints are .dcp directories that load_model and consolidate read in
    one process."""
    assert launcher.run(2, {**SPEC, "options": COMPARED, "out": str(tmp_path / "ddp")}) == [0, 0]
    ddp, fsdp = rank_weights(tmp_path / "ddp"), rank_weights(fsdp_run / "out")
    for key, reference in ddp.items():
        assert torch.equal(fsdp[key], rank_weights(fsdp_run / "out", 1)[key]), key  # the whole weights in every process
        if key.endswith("in_proj_bias"):
            # The keys' bias gets no gradient (softmax ignores a shift shared by a row's scores): Adam turns
            # rounding noise into steps there, and the order of FSDP's reductions changes the noise.
            fsdp, reference = dict(fsdp), reference.clone()
            fsdp[key] = torch.cat([fsdp[key][:D_MODEL], fsdp[key][2 * D_MODEL :]])
            reference = torch.cat([reference[:D_MODEL], reference[2 * D_MODEL :]])
        assert (fsdp[key] - reference).abs().max().item() <= 1e-6, key
    assert (_outputs(rank_weights(fsdp_run / "out")) - _outputs(ddp)).abs().max().item() <= 1e-5
    for rank in (0, 1):
        rollbacks = [e for e in rank_record(fsdp_run / "out", rank)["events"] if e["event"] == "rollback"]
        assert [(e["step"], e["to_step"]) for e in rollbacks] == [(12, 8)]
    assert [e["event"] for e in rank_record(tmp_path / "ddp")["events"]].count("rollback") == 1
    for mine, theirs in zip(rank_record(fsdp_run / "out")["history"], rank_record(tmp_path / "ddp")["history"]):
        for name in ("train_loss", "val_loss", "val_accuracy"):
            assert mine[name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-7), name

    checkpoints = fsdp_run / "run" / "checkpoints"
    committed = committed_checkpoints(checkpoints)
    names = sorted(manifest.path.name for manifest in committed)
    assert names == ["epoch-0001-step-000000008.dcp", "epoch-0002-step-000000016.dcp", "step-000000015.dcp"]
    # Each manifest records the run's monitor and its value, by which "best" is chosen.
    assert all(m.monitor == "val_loss" and m.val_loss is not None and m.monitored == m.val_loss for m in committed)
    # The run ended with its best epoch's weights (restore_best_weights): those of the "best" checkpoint.
    final = rank_weights(fsdp_run / "out")
    loaded = trainwell.load_model(fsdp_run / "run", checkpoint="best", model=model(kind="transformer"))
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, final[key]), key
    single = consolidate(loaded.checkpoint, tmp_path / "whole.pt")
    fresh = model(kind="transformer")
    assert trainwell.load_checkpoint(single, fresh)["step"] == int(loaded.checkpoint.stem.split("-")[-1])
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, final[key]), key


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize(
    ("killed", "where"),
    [
        ([1, "fsync", 2], "rank 1 before it fsyncs its piece of the step-8 checkpoint"),
        ([0, "rename", 2], "rank 0 after it renamed the step-8 directory into place, before the manifest"),
    ],
)
def test_a_process_killed_while_writing_a_sharded_checkpoint_leaves_the_committed_ones_and_resumes_exactly(
    launcher, fsdp_run, tmp_path, killed, where
):
    """SIGKILL inside the sharded write at the end of epoch 1: no checkpoint of step 8 counts, every committed one
    verifies, and resuming from step 5 ends with the weights of the run never killed, bit for bit."""
    run_dir = tmp_path / "run"
    codes = launcher.run(2, {**FSDP, "out": str(tmp_path / "killed"), "run_dir": str(run_dir), "kill_in_save": killed})
    assert codes[killed[0]] == -9 and codes[1 - killed[0]] != 0, (where, codes)  # the other fails at once
    checkpoints = run_dir / "checkpoints"
    committed = committed_checkpoints(checkpoints)
    assert [manifest.path.name for manifest in committed] == ["step-000000005.dcp"], where
    for manifest in committed:
        verify(manifest.path)
    assert latest_checkpoint(checkpoints)[1]["step"] == 5

    assert launcher.run(2, {**FSDP, "out": str(tmp_path / "resumed"), "run_dir": str(run_dir), "resume": "auto"}) == [
        0,
        0,
    ]
    reference = rank_weights(fsdp_run / "out")
    for rank in (0, 1):
        resumed = rank_weights(tmp_path / "resumed", rank)
        for key in reference:
            assert torch.equal(resumed[key], reference[key]), (where, key)
    events = [(e["event"], e["step"]) for e in rank_record(tmp_path / "resumed")["events"]]
    assert events[0] == ("resumed", 5) and ("rollback", 12) in events
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["event"] == "epoch"] == [1, 2]
    # The directory the kill left behind was replaced, or cleared away when older checkpoints were pruned.
    assert not list(checkpoints.glob(".*.tmp-*"))


def test_every_layer_of_a_stack_is_a_unit_of_its_own():
    transformer = model(kind="transformer")
    assert units(transformer) == list(transformer.encoder.layers)
    mlp = model()
    assert units(mlp) == [mlp[0], mlp[2]]


def test_strategy_is_a_validated_option():
    assert trainwell.TrainConfig().strategy == "ddp"
    with pytest.raises(
        trainwell.ConfigError, match="strategy='zero3' is not a valid choice: expected one of 'ddp', 'fsdp'"
    ):
        trainwell.TrainConfig(strategy="zero3")
