"""Synthetic corpus in the exact TAU 2020 Mobile layout: procedural scenes passed through simulated devices."""

from tinyasc.data.synth.corpus import SynthSpec, write_corpus, write_evaluation_corpus

__all__ = ["SynthSpec", "write_corpus", "write_evaluation_corpus"]
