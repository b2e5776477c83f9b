"""The strategy registry is the one list of parallel.strategy names (docs/CONVENTIONS.md, "What a strategy provides")."""
import pytest

from llmtts.config import ConfigError, load_config
from llmtts.distributed.strategies import REGISTRY, Strategy, build_strategy, strategy_class
from llmtts.train.toy import ToyConfig


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_strategy_builds_from_its_config_name(name):
    cfg = load_config(ToyConfig, None, [f"parallel.strategy={name}"])
    strategy = build_strategy(cfg.parallel)
    assert isinstance(strategy, Strategy) and type(strategy) is strategy_class(name)
    assert strategy.name == name  # what trainer.json records and a resume looks up again


def test_an_unregistered_strategy_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"strategy 'hsdp' is not one of \['none', 'ddp', 'fsdp2', 'deepspeed'\]"):
        load_config(ToyConfig, None, ["parallel.strategy=hsdp"])
