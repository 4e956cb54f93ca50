"""Conversation stores: where a conversation outlives the server that holds it, so that another server resumes it by
its session id (`?aural.resume=<id>`). `base.py` has the interface and the in-memory store, `tracker.py` what one
save writes, `saver.py` the saves in the background, `redis_store.py` the Redis store (an optional dependency)."""

from .base import Changes, ConversationMoved, ConversationStore, MemoryStore, Records, apply

__all__ = ["Changes", "ConversationMoved", "ConversationStore", "MemoryStore", "Records", "apply"]
