"""What `aural serve` knows of the Qwen2-Audio engine before it imports torch: the built-in models' geometries and
seeds (`presets` builds them), so that a preset's name is told from a typo at once, and the default prefill unit."""

from __future__ import annotations

from dataclasses import dataclass

PREFILL_CHUNK = 256  # prefill positions per step: the longest a live stream waits between two of its steps


@dataclass(frozen=True)
class PresetSize:
    """Geometry of a built-in model, and the seed of its random weights.

    The encoder's feed-forward width is 4 × `audio_d_model` (Qwen2-Audio-7B's too); `text_intermediate`
    defaults to 4 × `text_hidden` and `vocab_size` to the tokenizer's size.
    """

    audio_d_model: int
    audio_layers: int
    audio_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    seed: int
    text_intermediate: int | None = None
    vocab_size: int | None = None
    rms_norm_eps: float = 1e-6  # Qwen2's default


# Seeds whose greedy replies vary and complete UTF-8 characters (medium's seed 0 repeats one byte
# that never does: its replies would read as a row of U+FFFD).
PRESETS: dict[str, PresetSize] = {
    "tiny": PresetSize(64, 2, 2, 64, 2, 2, seed=0),
    "medium": PresetSize(384, 4, 6, 512, 8, 8, seed=10),
    # Qwen2-Audio-7B's published config; rope_theta 10000 is Qwen2's default.
    "7b-random": PresetSize(
        1280, 32, 20, 4096, 32, 32, seed=0, text_intermediate=11008, vocab_size=156032, rms_norm_eps=1e-5
    ),
}
