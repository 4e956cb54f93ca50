// The microphone's float samples as 16-bit PCM (little-endian, as every browser's platform is), posted to
// the page in chunks of `samples` (100 ms): ten append events a second, not one per 128-sample quantum.
class Pcm16 extends AudioWorkletProcessor {
  constructor({ processorOptions }) {
    super();
    this.samples = processorOptions.samples;
    this.chunk = new Int16Array(this.samples);
    this.filled = 0;
  }

  process([input]) {
    for (const sample of input[0] ?? []) {
      const clipped = Math.max(-1, Math.min(1, sample));
      this.chunk[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      if (this.filled === this.samples) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]); // moved, not copied: it is detached here
        this.chunk = new Int16Array(this.samples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16", Pcm16);
