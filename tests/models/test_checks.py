import pytest

from trainwell.exceptions import ConfigError
from trainwell.models import CNN, MLP, RNN, Transformer
from trainwell.models.checks import check_choice, check_dropout, check_positive


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "8"])
def test_check_positive_refuses_what_is_not_an_integer_of_at_least_one(value):
    with pytest.raises(ConfigError, match=rf"^hidden_size={value!r} is invalid: expected an integer ≥ 1\.$"):
        check_positive("hidden_size", value)
    check_positive("hidden_size", 1)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5])
def test_check_dropout_refuses_probabilities_outside_zero_to_below_one(dropout):
    with pytest.raises(ConfigError, match=rf"^dropout={dropout} is out of range: expected a number from 0 to below 1\.$"):
        check_dropout(dropout)
    check_dropout(0.0)
    check_dropout(0.99)


def test_check_choice_lists_the_choices():
    with pytest.raises(ConfigError, match=r"^cell='lsmt' is not a valid choice: expected one of 'lstm', 'gru'\.$"):
        check_choice("cell", "lsmt", ("lstm", "gru"))
    check_choice("cell", "gru", ("lstm", "gru"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: MLP([4, 8, 2], dropout=1.0),
        lambda: CNN(1, 10, dropout=1.0),
        lambda: RNN(4, 8, 2, dropout=1.0),
        lambda: Transformer(output_size=2, input_size=4, dropout=1.0),
    ],
)
def test_every_model_refuses_a_dropout_of_one_the_same_way(build):
    with pytest.raises(ConfigError, match=r"^dropout=1\.0 is out of range"):
        build()
