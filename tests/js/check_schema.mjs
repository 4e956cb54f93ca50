// Compiles protocols/schema.json with ajv in strict JSON Schema 2020-12 mode, then checks events against it:
// every event in the JSON file named on the command line ({"client": [...], "server": [...]}, recorded from a
// real server by tests/runtime/server/test_schema_js.py) must validate against its direction's union, and
// the invalid events below (and broken copies of the recorded ones) must be refused.
// Usage: node check_schema.mjs EVENTS.json   (exit status 0: all checks passed; 1: the failures are printed)
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";

const schemaUrl = new URL("../../protocols/schema.json", import.meta.url);
const schema = JSON.parse(readFileSync(schemaUrl, "utf8"));
const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addSchema(schema, "aural");
const validators = {
  any: ajv.compile({ $ref: "aural" }),
  client: ajv.compile({ $ref: "aural#/$defs/ClientEvent" }),
  server: ajv.compile({ $ref: "aural#/$defs/ServerEvent" }),
};

const INVALID = {
  client: [
    ["no type", { audio: "AAAA" }],
    ["an unknown type", { type: "input_audio_buffer.push", audio: "AAAA" }],
    ["a missing required field", { type: "input_audio_buffer.append" }],
    ["a field of the wrong type", { type: "input_audio_buffer.append", audio: 5 }],
    ["a value out of range", { type: "session.update", session: { audio: { input: { turn_detection: { type: "server_vad", threshold: 2 } } } } }],
    ["an audio format without its type", { type: "session.update", session: { audio: { input: { format: { rate: 16000 } } } } }],
    ["an unknown audio format", { type: "session.update", session: { audio: { input: { format: { type: "audio/opus" } } } } }],
    ["a negative content index", { type: "conversation.item.truncate", item_id: "item_1", content_index: -1, audio_end_ms: 0 }],
    ["an item of an unknown type", { type: "conversation.item.create", item: { type: "note", text: "hi" } }],
  ],
  server: [
    ["no event_id", { type: "input_audio_buffer.cleared" }],
    ["an error that is a string", { type: "error", event_id: "event_1", error: "bad" }],
    ["a response without its id", { type: "response.created", event_id: "event_1", response: { object: "realtime.response" } }],
  ],
};

const failures = [];
const check = (direction, label, event, valid) => {
  const validate = validators[direction];
  if (validate(event) !== valid) {
    const why = valid ? ajv.errorsText(validate.errors) : "it was accepted";
    failures.push(`${direction} event ${label}: ${why}`);
  }
};

const recorded = JSON.parse(readFileSync(process.argv[2], "utf8"));
let count = 0;
for (const direction of ["client", "server"]) {
  if (recorded[direction].length === 0) failures.push(`no recorded ${direction} events`);
  for (const event of recorded[direction]) {
    check(direction, event.type, event, true);
    check("any", event.type, event, true);
    const { type, ...untyped } = event;
    check(direction, `${type} without its type`, untyped, false);
    count += 1;
  }
  for (const [label, event] of INVALID[direction]) check(direction, `with ${label}`, event, false);
}
for (const event of recorded.server) {
  const { event_id, ...anonymous } = event;
  check("server", `${event.type} without its event_id`, anonymous, false);
}

if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`ajv strict 2020-12: schema compiled; ${count} recorded events valid, invalid ones refused`);
