// A user's spoken turn from a WAV file, as the realtime events that stream it: shared by both examples.
import { readFileSync } from 'node:fs';

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
 * The events of a spoken turn: the session's input format (the file's own rate and channels, Aural
 * extensions of GA's 24 kHz mono `audio/pcm`; no server VAD, the client says when the turn ends), the
 * audio in base64 appends of CHUNK_MS each, and the commit. Exits with one line when the file won't do.
 */
export function wavTurn(path) {
  let wav;
  try {
    wav = readWav(path);
  } catch (error) {
    console.error(error.message);
    process.exit(2);
  }
  const { pcm, rate, channels } = wav;
  const format = { type: 'audio/pcm', rate, ...(channels === 2 ? { channels } : {}) };
  const chunk = 2 * channels * Math.round((rate * CHUNK_MS) / 1000);
  const appends = [];
  for (let at = 0; at < pcm.length; at += chunk) {
    appends.push({ type: 'input_audio_buffer.append', audio: pcm.subarray(at, at + chunk).toString('base64') });
  }
  return { input: { format, turn_detection: null }, events: [...appends, { type: 'input_audio_buffer.commit' }] };
}
