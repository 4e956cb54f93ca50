"""End-to-end tests: the real runtime, its SDK and the official openai client over loopback sockets."""
