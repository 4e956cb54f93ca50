"""Qwen2-Audio on transformers: the chat format (with Qwen2.5's tool format), the audio encoder run on real
frames, the built-in presets and the engine that serves them."""
