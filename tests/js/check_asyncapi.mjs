// Parses protocols/asyncapi.json with the official AsyncAPI parser (which validates it against the AsyncAPI 3
// specification and resolves every reference), and checks that the document describes what the schema does:
// one channel, /v1/realtime, every client event received on it and every server event sent on it, each
// message's payload the event's definition in protocols/schema.json.
// Usage: node check_asyncapi.mjs   (exit status 0: valid; 1: the problems are printed)
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8"));
const document = read("../../protocols/asyncapi.json");
const schema = read("../../protocols/schema.json");

const parser = new Parser();
const { document: parsed, diagnostics } = await parser.parse(JSON.stringify(document));
const problems = diagnostics
  .filter((diagnostic) => diagnostic.severity <= DiagnosticSeverity.Warning)
  .map((diagnostic) => `${diagnostic.path.join(".")}: ${diagnostic.message}`);
if (parsed === undefined) problems.push("the parser returned no document");

const expectTypes = (label, actual, union) => {
  const wanted = schema.$defs[union].oneOf.map(({ $ref }) => schema.$defs[$ref.split("/").pop()].properties.type.const);
  const missing = wanted.filter((type) => !actual.includes(type));
  if (missing.length > 0) problems.push(`${label} lacks ${missing.join(", ")}`);
};

if (parsed !== undefined) {
  const channels = parsed.channels().all();
  if (channels.length !== 1 || channels[0].address() !== "/v1/realtime") problems.push("expected one channel, /v1/realtime");
  const operations = Object.fromEntries(parsed.operations().all().map((operation) => [operation.action(), operation]));
  for (const [action, union] of [["receive", "ClientEvent"], ["send", "ServerEvent"]]) {
    const messages = operations[action]?.messages().all() ?? [];
    expectTypes(`the ${action} operation`, messages.map((message) => message.name()), union);
  }
}
// The raw document: each event's message names its definition, which is schema.json's, references and all.
for (const [name, message] of Object.entries(document.components.messages)) {
  const ref = message.payload.$ref;
  if (ref === undefined) continue; // the binary audio frame, which has no JSON schema
  if (ref !== `#/components/schemas/${name}`) problems.push(`message ${name}: payload ${ref}`);
}
for (const [name, definition] of Object.entries(schema.$defs)) {
  const copied = JSON.stringify(document.components.schemas[name] ?? null).replaceAll("#/components/schemas/", "#/$defs/");
  if (copied !== JSON.stringify(definition)) problems.push(`components.schemas.${name} is not schema.json's`);
}

if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`AsyncAPI ${parsed.version()}: valid; ${parsed.allMessages().length} messages on ${parsed.channels().all()[0].address()}`);
