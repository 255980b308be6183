import errno
import json
import os
import pickle
import random
import signal
import time

import pytest
import torch
from torch import nn

import trainwell
from trainwell import CheckpointError, CheckpointMismatchError, TrainwellError
from trainwell.files.checkpoint import latest_checkpoint, read_checkpoint, verify, write_checkpoint
from trainwell.files.manifest import committed_checkpoints, manifest_path, prune
from trainwell.files.retry import RetryPolicy
from trainwell.observe.monitor import Monitor

from ..conftest import small_classifier


def _write(directory, step, epoch=0, val_loss=None, kind="step", payload=None):
    path = directory / f"step-{step:09d}.pt"
    return write_checkpoint(
        path,
        payload or {"step": step, "weights": torch.full((3,), float(step))},
        step=step,
        epoch=epoch,
        val_loss=val_loss,
        kind=kind,
    )


# ---------------------------------------------------------------- the format


def test_save_and_load_round_trip_with_the_classic_fields(tmp_path):
    model = small_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 2)).sum().backward()
    optimizer.step()
    path = trainwell.save_checkpoint(
        tmp_path / "ckpt" / "model.pt", model, optimizer, epoch=3, val_loss=0.25, step=120, note="hello"
    )

    raw = torch.load(path, weights_only=True)  # what code written for plain torch.save dictionaries does
    assert {"epoch", "model_state_dict", "optimizer_state_dict", "val_loss", "format_version", "versions"} <= set(raw)
    assert (raw["epoch"], raw["val_loss"], raw["step"], raw["note"]) == (3, 0.25, 120, "hello")
    assert raw["versions"]["torch"] == str(torch.__version__)

    fresh = small_classifier(seed=5)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters())
    checkpoint = trainwell.load_checkpoint(path, fresh, fresh_optimizer)
    assert checkpoint["epoch"] == 3
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])


def test_manifest_commits_the_file_with_its_sha256(tmp_path):
    path = _write(tmp_path, 7, epoch=1, val_loss=0.5)
    manifest = json.loads(manifest_path(path).read_text())
    import hashlib

    assert manifest["files"][path.name] == {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
    }
    assert (manifest["step"], manifest["epoch"], manifest["val_loss"], manifest["format_version"]) == (7, 1, 0.5, 1)
    assert verify(path).step == 7


def test_a_plain_state_dict_file_loads_too(tmp_path):
    model = small_classifier()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    fresh = small_classifier(seed=9)
    trainwell.load_checkpoint(tmp_path / "plain.pt", fresh)
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_values_that_would_not_load_safely_are_refused_at_save_time(tmp_path):
    import numpy

    class Settings:
        pass

    for bad, named in ((Settings(), "Settings"), (numpy.float64(0.5), "numpy.float64")):
        with pytest.raises(TypeError, match=rf"checkpoint\['extra'\] is a .*{named}.*weights_only=True"):
            trainwell.save_checkpoint(tmp_path / "bad.pt", small_classifier(), extra=bad)
    assert not (tmp_path / "bad.pt").exists()


def test_newer_format_is_refused(tmp_path):
    path = write_checkpoint(tmp_path / "future.pt", {"format_version": 99})
    with pytest.raises(CheckpointError, match="format_version=99, newer than this trainwell reads"):
        read_checkpoint(path)


def test_different_architecture_is_refused_naming_the_parameters(tmp_path):
    path = trainwell.save_checkpoint(tmp_path / "model.pt", small_classifier())
    wider = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    before = wider[0].weight.clone()
    with pytest.raises(
        CheckpointMismatchError, match=r"different shape: 0\.weight \(checkpoint \(16, 2\), model \(32, 2\)\)"
    ) as caught:
        trainwell.load_checkpoint(path, wider)
    assert isinstance(caught.value, (TrainwellError, ValueError))
    assert torch.equal(wider[0].weight, before)  # nothing was loaded
    deeper = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3), nn.ReLU(), nn.Linear(3, 3))
    with pytest.raises(CheckpointMismatchError, match=r"missing from the checkpoint: 4\.weight, 4\.bias"):
        trainwell.load_checkpoint(path, deeper)


# ---------------------------------------------------------------- damaged and malicious files


def test_flipped_byte_is_detected_naming_the_file_and_auto_resume_falls_back(tmp_path):
    older, newer = _write(tmp_path, 10), _write(tmp_path, 20)
    data = bytearray(newer.read_bytes())
    data[len(data) // 2] ^= 0x01
    newer.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"checkpoint '.*{newer.name}' is corrupt: its SHA-256 differs"):
        read_checkpoint(newer)
    skipped = []
    path, checkpoint = latest_checkpoint(tmp_path, on_bad=lambda manifest, error: skipped.append(manifest.path))
    assert (path, checkpoint["step"], skipped) == (older, 10, [newer])


def test_truncated_file_is_detected_and_auto_resume_falls_back(tmp_path):
    older, newer = _write(tmp_path, 10), _write(tmp_path, 20)
    newer.write_bytes(newer.read_bytes()[:100])
    with pytest.raises(
        CheckpointError, match=rf"checkpoint '.*{newer.name}' is corrupt: it has 100 bytes but its manifest recorded"
    ):
        read_checkpoint(newer)
    assert latest_checkpoint(tmp_path)[0] == older


def test_truncated_file_without_a_manifest_is_reported_by_name(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"checkpoint '.*plain\.pt' is corrupt or truncated"):
        trainwell.load_checkpoint(path)


def test_latest_means_highest_committed_step_not_newest_file(tmp_path):
    high, low = _write(tmp_path, 300), _write(tmp_path, 5)
    os.utime(high, (1, 1))  # the highest step is also the oldest file
    _write(tmp_path, 400).with_name("step-000000400.manifest.json").unlink()  # written, never committed
    assert [m.path for m in committed_checkpoints(tmp_path)] == [high, low]
    assert latest_checkpoint(tmp_path)[0] == high


class _Payload:
    """Unpickling this creates the sentinel file: what a crafted checkpoint would do."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_malicious_checkpoint_payload_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "step-000000050.pt"
    torch.save({"model_state_dict": {}, "step": 50, "payload": _Payload(sentinel)}, path)
    # Commit it with a correct manifest: an attacker who can write the file can write that too.
    import hashlib

    manifest = {
        "format_version": 1,
        "kind": "step",
        "step": 50,
        "epoch": 0,
        "val_loss": None,
        "healthy": True,
        "files": {path.name: {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}},
    }
    manifest_path(path).write_text(json.dumps(manifest))
    # The payload is live: ordinary unpickling runs it.
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control"))).close()
    assert (tmp_path / "control").exists()

    with pytest.raises(
        CheckpointError, match="refused: it holds objects that are not tensors or plain data.*weights_only=True"
    ):
        trainwell.load_checkpoint(path, small_classifier())
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError):
        trainwell.fit(small_classifier(), [(torch.randn(8, 2), torch.randint(0, 3, (8,)))], resume=path, progress=False)
    assert not sentinel.exists()


# ---------------------------------------------------------------- writing: retries, failures, pruning


class FakeClock:
    def __init__(self):
        self.waits = []

    def sleep(self, seconds):
        self.waits.append(seconds)


def test_transient_write_errors_are_retried_with_backoff_on_a_fake_clock(tmp_path, monkeypatch):
    from trainwell.files import atomic

    failures = [OSError(errno.EIO, "Input/output error")] * 2
    real_fsync = os.fsync

    def flaky_fsync(descriptor):
        if failures:
            raise failures.pop()
        return real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", flaky_fsync)
    clock = FakeClock()
    started = time.monotonic()
    path = write_checkpoint(tmp_path / "step-000000001.pt", {"step": 1}, step=1, retry=RetryPolicy(), sleep=clock.sleep)
    assert time.monotonic() - started < 1.0  # the waits went to the fake clock
    assert len(clock.waits) == 2
    assert 1.0 <= clock.waits[0] <= 1.1 and 2.0 <= clock.waits[1] <= 2.2
    assert verify(path).step == 1
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_disk_full_fails_after_the_retries_and_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    from trainwell.files import checkpoint

    previous = _write(tmp_path, 10)
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(file):
            handle = real_open(file, mode, *args, **kwargs)
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    clock = FakeClock()
    with pytest.raises(
        CheckpointError,
        match=r"after 3 attempts: \[Errno 28\] No space left on device: the disk is full \(.+ free on the file system "
        r"of '.+'; the checkpoint needs .+\)\. Free disk space",
    ) as caught:
        write_checkpoint(tmp_path / "step-000000020.pt", {"step": 20}, step=20, sleep=clock.sleep)
    monkeypatch.undo()
    assert isinstance(caught.value, TrainwellError)
    assert len(clock.waits) == 2
    assert latest_checkpoint(tmp_path)[0] == previous and verify(previous).step == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010.manifest.json", "step-000000010.pt"]
    assert checkpoint.read_manifest(tmp_path / "step-000000020.pt") is None


def test_permission_denied_fails_at_once_with_a_clear_message(tmp_path, monkeypatch):
    from trainwell.files import atomic

    previous = _write(tmp_path, 10)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", denied)
    clock = FakeClock()
    with pytest.raises(
        CheckpointError,
        match=r"Permission denied \(.+ free on the file system of '.+'\)\. This is not transient, so it was not "
        r"retried\. Make the directory '.+' writable",
    ):
        write_checkpoint(tmp_path / "step-000000020.pt", {"step": 20}, step=20, sleep=clock.sleep)
    assert clock.waits == []
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path)[0] == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000010.manifest.json", "step-000000010.pt"]


def test_prune_keeps_the_newest_and_the_best_and_deletes_leftovers(tmp_path):
    for step, loss in ((8, 0.9), (16, 0.3), (24, 0.5), (32, 0.7)):
        write_checkpoint(
            tmp_path / f"epoch-{step // 8:04d}-step-{step:09d}.pt",
            {"s": step},
            step=step,
            epoch=step // 8,
            val_loss=loss,
            kind="epoch",
        )
    _write(tmp_path, 36)
    (tmp_path / "step-000000040.pt").write_bytes(b"half")  # written, never committed
    (tmp_path / ".step-000000044.pt.tmp-123").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("mine")
    is_ours = lambda p: p.name.endswith(".pt") and "step-" in p.name  # noqa: E731
    best_first = lambda manifests: Monitor("val_loss").ranked(manifests, value=lambda m: m.val_loss)  # noqa: E731
    deleted = prune(tmp_path, keep_last=2, keep_best=1, is_ours=is_ours, best_first=best_first)
    assert sorted(p.name for p in deleted) == ["epoch-0001-step-000000008.pt", "epoch-0003-step-000000024.pt"]
    assert [m.path.name for m in committed_checkpoints(tmp_path)] == [
        "step-000000036.pt",
        "epoch-0004-step-000000032.pt",
        "epoch-0002-step-000000016.pt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".json")) == [
        "epoch-0002-step-000000016.pt",
        "epoch-0004-step-000000032.pt",
        "notes.txt",
        "step-000000036.pt",
    ]


# ---------------------------------------------------------------- SIGKILL at random moments


def _steps_recorded(losses_file):
    if not losses_file.exists():
        return 0
    return max((int(line.split()[0]) for line in losses_file.read_text().splitlines() if line.strip()), default=0)


def _trials(run_seconds):
    """12 kills from outside at random moments of a run, 12 from inside checkpoint writing at chosen operations."""
    rng = random.Random(20261127)
    inside = [
        ("replace-before", 5),
        ("replace-before", 14),
        ("replace-after", 7),
        ("replace-after", 22),
        ("fsync", 9),
        ("fsync", 26),
        ("unlink", 8),
        ("unlink", 17),
        ("write", 40),
        ("write", 310),
        ("replace-before", 38),
        ("replace-after", 51),
    ]
    return [("outside", rng.uniform(0.0, 0.9 * run_seconds)) for _ in range(12)] + inside


def _wait_for_first_step(losses_file):
    deadline = time.monotonic() + 120
    while _steps_recorded(losses_file) == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    return time.monotonic()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigkill_at_random_moments_always_leaves_a_loadable_checkpoint_and_resume_completes(tmp_path, zygote):
    """24 trials: SIGKILL during steps and during saves (every step is checkpointed), then resume.

    After each kill, every committed checkpoint verifies, the newest is no older than the last
    step that finished before the kill, and resuming completes the run with exactly the weights
    of a run that was never killed.
    """

    def spec(name, **extra):
        return {
            "run_dir": str(tmp_path / name),
            "losses": str(tmp_path / f"{name}.txt"),
            "final": str(tmp_path / f"{name}.pt"),
            "epochs": 3,
            "every_steps": 1,
            **extra,
        }

    pid = zygote.start(spec("reference"))
    first_step = _wait_for_first_step(tmp_path / "reference.txt")
    assert zygote.wait(pid) == 0
    run_seconds = time.monotonic() - first_step
    reference = torch.load(tmp_path / "reference.pt")
    killed_in_save = killed_outside = 0
    for index, (how, detail) in enumerate(_trials(run_seconds)):
        name = f"trial{index}"
        if how == "outside":
            pid = zygote.start(spec(name))
            _wait_for_first_step(tmp_path / f"{name}.txt")
            time.sleep(detail)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = zygote.wait(pid)
            killed_outside += status == -signal.SIGKILL
        else:
            status = zygote.run(spec(name, kill_in_save=[how, detail]))
            assert status == -signal.SIGKILL, (how, detail, status)
            killed_in_save += 1
        directory = tmp_path / name / "checkpoints"
        for manifest in committed_checkpoints(directory):
            verify(manifest.path)  # no committed checkpoint is ever damaged
        finished_steps = _steps_recorded(tmp_path / f"{name}.txt")
        found = latest_checkpoint(directory)
        if finished_steps >= 2:
            assert found is not None, (how, detail)
            assert found[1]["step"] >= finished_steps - 1, (how, detail, found[1]["step"], finished_steps)
        assert zygote.run(spec(name, resume="auto")) == 0, (how, detail)
        resumed = torch.load(tmp_path / f"{name}.pt")
        for key in reference:
            assert torch.equal(resumed[key], reference[key]), (how, detail, key)
    assert killed_in_save == 12
    assert killed_outside >= 8, (
        f"only {killed_outside} of 12 outside kills landed before the run ended ({run_seconds:.2f} s)"
    )


# ---------------------------------------------------------------- aliases: last.pt, best.pt


def _committed(tmp_path, step=10, value=0.5):
    path = tmp_path / f"epoch-0001-step-{step:09d}.pt"
    write_checkpoint(
        path, {"model_state_dict": nn.Linear(2, 2).state_dict()}, step=step, epoch=1, val_loss=value, kind="epoch"
    )
    return verify(path)


def test_an_alias_is_the_checkpoint_under_a_stable_name_committed_by_its_own_manifest(tmp_path):
    from trainwell.files.checkpoint import alias_checkpoint

    source = _committed(tmp_path)
    alias = alias_checkpoint(source, tmp_path / "best.pt")
    manifest = verify(alias)  # the bytes match the manifest's checksum
    assert (manifest.alias_of, manifest.step, manifest.val_loss) == (source.path.name, 10, 0.5)
    assert os.path.samefile(alias, source.path)
    assert [m.path.name for m in committed_checkpoints(tmp_path)] == [source.path.name]
    # Pruning, which recognises checkpoints by name, leaves the alias alone.
    prune(tmp_path, 1, 0, is_ours=lambda p: p.name.startswith("epoch-"), best_first=lambda ms: ms)
    assert alias.exists() and verify(alias) is not None


def test_without_hard_links_the_alias_is_a_copy(tmp_path, monkeypatch):
    from trainwell.files import atomic
    from trainwell.files.checkpoint import alias_checkpoint

    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    source = _committed(tmp_path)
    alias = alias_checkpoint(source, tmp_path / "last.pt")
    assert not os.path.samefile(alias, source.path) and verify(alias).sha256 == source.sha256


def test_a_crash_while_an_alias_is_replaced_leaves_no_alias_that_looks_complete(tmp_path, monkeypatch):
    from trainwell.files import checkpoint
    from trainwell.files.checkpoint import alias_checkpoint
    from trainwell.files.manifest import read_manifest

    first, second = _committed(tmp_path, 10, 0.5), _committed(tmp_path, 20, 0.3)
    alias_checkpoint(first, tmp_path / "best.pt")
    real = checkpoint.write_atomically

    def crash_on_the_manifest(path, write):
        if path.name.endswith(".manifest.json"):
            raise KeyboardInterrupt  # the process dies after the new bytes are in place, before the commit
        return real(path, write)

    monkeypatch.setattr(checkpoint, "write_atomically", crash_on_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        alias_checkpoint(second, tmp_path / "best.pt")
    monkeypatch.undo()
    # The new bytes are there, but uncommitted: nothing loads best.pt as if it were the best.
    assert read_manifest(tmp_path / "best.pt") is None
    from trainwell.use.inference import find_checkpoint

    assert find_checkpoint(tmp_path, "best").name == second.path.name  # chosen again from the manifests
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
