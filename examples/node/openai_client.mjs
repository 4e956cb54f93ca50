// The official `openai` npm package's realtime client talking to Aural: only the base URL changes.
// `OpenAIRealtimeWS` (over the `ws` package, Node 18+) always connects with wss://, so the runtime serves TLS;
// for a local run, with a development CA that Node is told to trust:
//
//   aural serve --alias gpt-realtime --port 8443 --tls-self-signed .certs &
//   NODE_EXTRA_CA_CERTS=.certs/ca.pem node openai_client.mjs --text "Hello!"   (a typed turn)
//   NODE_EXTRA_CA_CERTS=.certs/ca.pem node openai_client.mjs ../sample.wav     (a spoken one)
//
// Options: --base-url https://127.0.0.1:8443/v1, --model gpt-realtime, --api-key KEY (for a runtime that asks
// for one), --max-tokens 32, --trace (every server event, one JSON object a line, on stderr).
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { parseArgs } from 'node:util';
import { wavTurn } from './wav.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'base-url': { type: 'string', default: 'https://127.0.0.1:8443/v1' },
    model: { type: 'string', default: 'gpt-realtime' },
    'api-key': { type: 'string', default: 'unused' },
    text: { type: 'string' },
    'max-tokens': { type: 'string', default: '32' },
    trace: { type: 'boolean', default: false },
  },
});
if (positionals.length !== (values.text === undefined ? 1 : 0)) {
  console.error('usage: node openai_client.mjs (FILE.wav | --text TEXT) [--base-url URL] [--model NAME] [--api-key KEY] [--trace]');
  process.exit(2);
}

const spoken = values.text === undefined ? wavTurn(positionals[0]) : null;
const client = new OpenAI({ apiKey: values['api-key'], baseURL: values['base-url'] });
const rt = new OpenAIRealtimeWS({ model: values.model }, client);

rt.socket.on('open', () => {
  const session = { type: 'realtime', output_modalities: ['text'], ...(spoken ? { audio: { input: spoken.input } } : {}) };
  rt.send({ type: 'session.update', session });
  if (spoken) {
    spoken.events.forEach((event) => rt.send(event));
  } else {
    const content = [{ type: 'input_text', text: values.text }];
    rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content } });
  }
  rt.send({ type: 'response.create', response: { max_output_tokens: Number(values['max-tokens']) } });
});

if (values.trace) rt.on('event', (event) => console.error(JSON.stringify(event)));
rt.on('response.output_text.delta', (event) => process.stdout.write(event.delta));
rt.on('response.done', (event) => {
  console.log(`\n[${event.response.status}]`);
  rt.close();
});
// Both the server's `error` events and the socket's own failures (a refused connection, an untrusted certificate).
rt.on('error', (error) => {
  console.log(`\nerror: ${error.message}`);
  process.exitCode = 1;
  rt.close();
});
