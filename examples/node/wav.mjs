// A user's spoken turn from a WAV file, as the realtime events that stream it: shared by both examples.
// Any PCM16 WAV (any rate, mono or stereo) goes out in GA's default format, so these clients work unchanged
// against any server of the GA protocol.
import { readFileSync } from 'node:fs';

const WIRE_RATE = 24000;
const CHUNK_MS = 100; // how much audio one append carries, as a microphone would send it

/** The PCM16 samples of a RIFF WAVE file, with their rate and channel count. */
export function readWav(path) {
  const wav = readFileSync(path);
  if (wav.toString('ascii', 0, 4) !== 'RIFF' || wav.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`${path} is not a WAV file`);
  }
  let format = null;
  for (let at = 12; at + 8 <= wav.length; ) {
    const id = wav.toString('ascii', at, at + 4);
    const size = wav.readUInt32LE(at + 4);
    const body = wav.subarray(at + 8, at + 8 + size);
    if (id === 'fmt ') {
      format = { code: body.readUInt16LE(0), channels: body.readUInt16LE(2), rate: body.readUInt32LE(4), bits: body.readUInt16LE(14) };
    } else if (id === 'data') {
      if (!format || format.code !== 1 || format.bits !== 16) {
        throw new Error(`${path} is not 16-bit PCM: convert it (e.g. ffmpeg -i IN -c:a pcm_s16le OUT.wav)`);
      }
      return { pcm: body, rate: format.rate, channels: format.channels };
    }
    at += 8 + size + (size % 2); // chunks are padded to an even size
  }
  throw new Error(`${path} has no audio data`);
}

/**
 * PCM16 samples as the GA wire format wants them: mono (channels averaged) at 24 kHz (linear interpolation,
 * plenty for speech to a speech model).
 */
export function toWire(pcm, rate, channels) {
  const frames = Math.floor(pcm.length / (2 * channels));
  const mono = new Float64Array(frames);
  for (let frame = 0; frame < frames; frame++) {
    for (let channel = 0; channel < channels; channel++) mono[frame] += pcm.readInt16LE(2 * (frame * channels + channel));
    mono[frame] /= channels;
  }
  const length = Math.floor((frames * WIRE_RATE) / rate);
  const out = Buffer.alloc(2 * length);
  for (let at = 0; at < length; at++) {
    const position = (at * rate) / WIRE_RATE;
    const before = Math.floor(position);
    const after = Math.min(before + 1, frames - 1);
    const sample = mono[before] + (mono[after] - mono[before]) * (position - before);
    out.writeInt16LE(Math.round(sample), 2 * at);
  }
  return out;
}

/**
 * The events of a spoken turn: the audio as GA's default input format (PCM16 mono at 24 kHz) in base64
 * appends of CHUNK_MS each, then the commit; and the session's input settings for it (no server VAD: the
 * client says when the turn ends). Exits with one line when the file won't do.
 */
export function wavTurn(path) {
  let wav;
  try {
    wav = readWav(path);
  } catch (error) {
    console.error(error.message);
    process.exit(2);
  }
  const pcm = toWire(wav.pcm, wav.rate, wav.channels);
  const chunk = (2 * WIRE_RATE * CHUNK_MS) / 1000;
  const appends = [];
  for (let at = 0; at < pcm.length; at += chunk) {
    appends.push({ type: 'input_audio_buffer.append', audio: pcm.subarray(at, at + chunk).toString('base64') });
  }
  const input = { format: { type: 'audio/pcm', rate: WIRE_RATE }, turn_detection: null };
  return { input, events: [...appends, { type: 'input_audio_buffer.commit' }] };
}
