"""The engine interface (`base`) and its transformers implementation for Qwen2-Audio (`qwen2_audio`)."""
