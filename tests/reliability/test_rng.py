import random

import numpy
import torch

from trainwell.reliability.rng import RandomState, rng_state, set_rng_state


def test_random_states_round_trip():
    random.seed(1)
    numpy.random.seed(2)
    torch.manual_seed(3)
    saved = rng_state(torch.device("cpu"))
    expected = (random.random(), numpy.random.rand(), numpy.random.randn(), torch.rand(1).item())
    random.seed(9)
    numpy.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(saved, torch.device("cpu"))
    assert (random.random(), numpy.random.rand(), numpy.random.randn(), torch.rand(1).item()) == expected


def test_the_random_state_part_round_trips_as_a_checkpoint_would():
    part = RandomState(torch.device("cpu"))
    torch.manual_seed(4)
    saved = part.state_dict()
    expected = torch.rand(2)
    torch.manual_seed(5)
    part.load_state_dict(saved)
    assert torch.equal(torch.rand(2), expected)
