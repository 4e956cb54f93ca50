// A raw websocket client of Aural (the `ws` package, Node 18+): stream a WAV file as
// input_audio_buffer.append events, commit it, ask for a response and print the reply as it streams.
//
//   aural serve &
//   node ws_client.mjs ../sample.wav [--url ws://127.0.0.1:8000/v1/realtime] [--api-key KEY] [--max-tokens 32] [--trace]
//
// --api-key: a server key or a client secret, for a runtime that asks for one. --trace writes every server
// event, one JSON object a line, to stderr.
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { wavTurn } from './wav.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:8000/v1/realtime' },
    'api-key': { type: 'string' },
    'max-tokens': { type: 'string', default: '32' },
    trace: { type: 'boolean', default: false },
  },
});
if (positionals.length !== 1) {
  console.error('usage: node ws_client.mjs FILE.wav [--url URL] [--api-key KEY] [--max-tokens N] [--trace]');
  process.exit(2);
}

const turn = wavTurn(positionals[0]);
const headers = values['api-key'] ? { Authorization: `Bearer ${values['api-key']}` } : {};
const ws = new WebSocket(values.url, { headers });
const send = (event) => ws.send(JSON.stringify(event));

ws.on('open', () => {
  send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['text'], audio: { input: turn.input } } });
  turn.events.forEach(send);
  send({ type: 'response.create', response: { max_output_tokens: Number(values['max-tokens']) } });
});

ws.on('message', (data) => {
  const event = JSON.parse(data.toString());
  if (values.trace) console.error(JSON.stringify(event));
  switch (event.type) {
    case 'response.output_text.delta':
      process.stdout.write(event.delta);
      break;
    case 'error':
      console.log(`\nerror: ${event.error.message}`);
      process.exitCode = 1;
      ws.close();
      break;
    case 'response.done':
      console.log(`\n[${event.response.status}]`);
      ws.close();
      break;
  }
});

ws.on('error', (error) => {
  console.error(`cannot talk to ${values.url}: ${error.message}`);
  process.exitCode = 1;
});
