"""The official model, its CPU patches and the component wrappers that get compiled."""

from sam3_tvm.model.builder import CONFIGS, TINY_OVERRIDES, Config, bpe_vocab_path, build_model

__all__ = ["CONFIGS", "TINY_OVERRIDES", "Config", "bpe_vocab_path", "build_model"]
