"""Stage 1 data: synthesized Think-before-Attack dialogues, diversity-selected (`mtsa synth`)."""

from mtsa.synth.job import SynthConfig, run_synth

__all__ = ["SynthConfig", "run_synth"]
