"""Input audio: the wire formats decoded to 16 kHz mono float32 as they stream in."""
