import random

import pytest
import torch

from trainwell import ConfigError
from trainwell.system import memory_metrics, resolve_device, seed_everything


def test_auto_device_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_unavailable_cuda_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda' is not available.*device='cpu'"):
        resolve_device("cuda")


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="device='cuda:5' is out of range.*cuda:0 to cuda:1"):
        resolve_device("cuda:5")


def test_seed_everything_seeds_python_numpy_and_torch():
    import numpy

    seed_everything(5)
    first = (random.random(), numpy.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), numpy.random.rand(), torch.rand(1).item()) == first


def test_cpu_memory_is_the_peak_rss_in_bytes():
    memory = memory_metrics(torch.device("cpu"))
    assert set(memory) == {"memory"} and memory["memory"] > 10 * 2**20


def test_only_rank_zero_writes_files(monkeypatch):
    from trainwell.system import is_primary_process

    monkeypatch.delenv("RANK", raising=False)
    assert is_primary_process()
    monkeypatch.setenv("RANK", "3")
    assert not is_primary_process()
    monkeypatch.setenv("RANK", "0")
    assert is_primary_process()
