"""Many conversations on one device: the paged KV pool, the batched forward over it, and the scheduler that
runs every conversation's decode step in one batch and interleaves prefill chunks between steps."""
