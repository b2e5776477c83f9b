"""Data layer: built-in corpus, ingestion into WebDataset shards, the streaming reader, shard-parallel map.

Public API: ``ShardLoader`` / ``agree_num_batches`` (reader), ``ShardWriter`` / ``ShardSetWriter`` /
``build_index`` / ``read_index`` / ``write_index`` (shards), ``map_shards`` / ``iter_shard`` / ``dist_env``
(parallel_map). Import from the submodules to keep start-up light.
"""
