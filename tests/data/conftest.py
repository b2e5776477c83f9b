import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import write_test_shards  # noqa: E402


@pytest.fixture
def make_shards(tmp_path):
    """make_shards(n_shards, per_shard, **kw) -> (shard_dir, keys): real tiny audio+codes shards."""
    def make(n_shards, per_shard, name="shards", **kw):
        return write_test_shards(tmp_path / name, n_shards, per_shard, **kw)
    return make
