// The Aural browser demo: one realtime conversation with the server that serves this page.
// The microphone streams 24 kHz PCM16 from an AudioWorklet (or Opus from a MediaRecorder) in
// input_audio_buffer.append events; server VAD finds the turns, the reply streams in as text, and the
// get_time tool runs here, in the page.

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), connection: $("connection"), key: $("key"), format: $("input-format"),
  toolChoice: $("tool-choice"), maxTokens: $("max-tokens"), transcribe: $("transcribe"), connect: $("connect"),
  mic: $("mic"), speech: $("speech"), turn: $("turn"), reply: $("reply"), textTurn: $("text-turn"),
  text: $("text"), send: $("send"), items: $("items"),
};

const GET_TIME = {
  type: "function",
  name: "get_time",
  description: "The user's date, time and time zone, from their browser.",
  parameters: { type: "object", properties: {}, additionalProperties: false },
};

const ENDINGS = {
  completed: "Replied", incomplete: "Reply cut at its token limit", cancelled: "Reply stopped", failed: "Reply failed",
};

let socket = null;
let mic = null; // {format, stop()} while the microphone runs
let response = null; // the id of the running response
let next = null; // a response.create to send when the running response is done
const views = new Map(); // item id → its <li> in the conversation

// --- connection ---------------------------------------------------------------------------------------

function connect() {
  const key = ui.key.value.trim();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
  socket = new WebSocket(url, key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"]);
  let opened = false;
  setStatus("Connecting…");
  socket.onopen = () => { opened = true; };
  socket.onmessage = (message) => handle(JSON.parse(message.data));
  socket.onclose = (event) => {
    socket = null;
    response = next = null;
    stopMic();
    setConnected(false);
    setStatus(opened
      ? `Disconnected${event.reason ? `: ${event.reason}` : "."}`
      : "The server refused the connection: a missing or wrong key, or a page origin it does not allow.");
  };
}

function send(event) {
  socket?.send(JSON.stringify(event));
}

function sessionUpdate() {
  const input = { turn_detection: { type: "server_vad" }, transcription: ui.transcribe.checked ? {} : null };
  if (mic) input.format = mic.format;
  const session = { type: "realtime", output_modalities: ["text"], audio: { input }, tools: [GET_TIME] };
  const choice = ui.toolChoice.value === "auto" ? "auto" : { type: "function", name: ui.toolChoice.value };
  const limits = { tool_choice: choice, max_output_tokens: ui.maxTokens.valueAsNumber || "inf" };
  return { type: "session.update", session: { ...session, ...limits } };
}

function setConnected(connected) {
  ui.connect.textContent = connected ? "Disconnect" : "Connect";
  ui.key.disabled = connected;
  for (const control of [ui.mic, ui.text, ui.send]) control.disabled = !connected;
}

function setStatus(text) {
  ui.status.textContent = text;
}

function setIndicator(element, state, text) {
  element.dataset.state = state;
  element.textContent = text;
}

// --- microphone ---------------------------------------------------------------------------------------

async function startMic() {
  const audio = { echoCancellation: true, noiseSuppression: true };
  const stream = await navigator.mediaDevices.getUserMedia({ audio });
  mic = ui.format.value === "pcm" ? await streamPcm(stream) : streamCompressed(stream);
  if (!socket) return stopMic(); // the connection closed meanwhile
  send(sessionUpdate()); // the format, before the first append
  ui.format.disabled = true;
  ui.mic.textContent = "Stop microphone";
  setIndicator(ui.speech, "silent", "Listening");
}

function stopMic() {
  if (!mic) return;
  mic.stop();
  mic = null;
  send({ type: "input_audio_buffer.clear" }); // drops an unfinished turn; a compressed stream ends here
  ui.format.disabled = false;
  ui.mic.textContent = "Start microphone";
  setIndicator(ui.speech, "off", "Microphone off");
}

async function streamPcm(stream) {
  let context = new AudioContext({ sampleRate: 24000 });
  let source;
  try {
    source = context.createMediaStreamSource(stream);
  } catch { // Firefox cannot resample a microphone: take its rate (the server resamples any rate)
    await context.close();
    context = new AudioContext();
    source = context.createMediaStreamSource(stream);
  }
  await context.audioWorklet.addModule("/static/worklet.js");
  const node = new AudioWorkletNode(context, "pcm16", { processorOptions: { samples: context.sampleRate / 10 } });
  node.port.onmessage = (message) => append(message.data);
  source.connect(node).connect(context.destination); // the worklet writes silence; the destination pulls it
  return {
    format: { type: "audio/pcm", rate: context.sampleRate },
    stop: () => { context.close(); stream.getTracks().forEach((track) => track.stop()); },
  };
}

function streamCompressed(stream) {
  const choices = [ // [what the recorder makes, the session's format for it]: Chrome, Firefox, Safari
    ["audio/webm;codecs=opus", "audio/webm"], ["audio/ogg;codecs=opus", "audio/ogg"], ["audio/mp4", "audio/mp4"],
  ];
  const [mimeType, type] = choices.find(([mime]) => MediaRecorder.isTypeSupported(mime));
  const recorder = new MediaRecorder(stream, { mimeType });
  let queue = Promise.resolve(); // chunks go out in order, though each is read asynchronously
  recorder.ondataavailable = ({ data }) => { queue = queue.then(() => data.arrayBuffer()).then(append); };
  recorder.start(100);
  return {
    format: { type },
    stop: () => {
      recorder.ondataavailable = null; // its last chunk would start a stream without a header
      recorder.stop();
      stream.getTracks().forEach((track) => track.stop());
    },
  };
}

function append(buffer) {
  if (!mic) return;
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  send({ type: "input_audio_buffer.append", audio: btoa(binary) });
}

// --- server events --------------------------------------------------------------------------------------

const on = {
  "session.created"() {
    views.clear();
    ui.items.replaceChildren();
    ui.reply.textContent = "";
    setConnected(true);
    setStatus("Connected: start the microphone or type a message.");
    send(sessionUpdate());
  },
  error({ error }) {
    setStatus(`Error: ${error.message}`);
  },
  "input_audio_buffer.speech_started"({ item_id, audio_start_ms }) {
    setIndicator(ui.speech, "speaking", "Speaking");
    if (response) {
      setIndicator(ui.turn, "interrupted", "You spoke over the reply: it stops");
      next = null;
    } else {
      setIndicator(ui.turn, "user", "Your turn");
    }
    view(item_id, "user").speech.textContent = `speech from ${seconds(audio_start_ms)}`;
  },
  "input_audio_buffer.speech_stopped"({ item_id, audio_end_ms }) {
    setIndicator(ui.speech, "silent", "Listening");
    setIndicator(ui.turn, "detected", "Turn detected");
    view(item_id, "user").speech.textContent += ` to ${seconds(audio_end_ms)}`;
  },
  "conversation.item.added"({ item }) { show(item); },
  "conversation.item.done"({ item }) { show(item); },
  "conversation.item.deleted"({ item_id }) {
    views.get(item_id)?.remove();
    views.delete(item_id);
  },
  "conversation.item.input_audio_transcription.completed"({ item_id, transcript }) {
    view(item_id, "user").text.textContent = transcript;
  },
  "response.created"({ response: created }) {
    response = created.id;
    ui.reply.textContent = "";
    ui.reply.setAttribute("aria-busy", "true"); // announced once whole, not token by token
    setIndicator(ui.turn, "thinking", "Aural is thinking");
  },
  "response.output_text.delta"({ item_id, delta }) {
    ui.reply.textContent += delta;
    view(item_id, "assistant").text.textContent += delta;
    setIndicator(ui.turn, "replying", "Aural is replying");
  },
  "response.function_call_arguments.delta"({ item_id, delta }) {
    view(item_id, "tool").text.textContent += delta;
  },
  "response.function_call_arguments.done"({ call_id, name }) {
    const output = name === GET_TIME.name ? getTime() : { error: `There is no tool named ${name}.` };
    const item = { type: "function_call_output", call_id, output: JSON.stringify(output) };
    send({ type: "conversation.item.create", item });
    next = { type: "response.create", response: { tool_choice: "auto" } }; // the model answers with the result
  },
  "response.done"({ response: done }) {
    response = null;
    ui.reply.setAttribute("aria-busy", "false");
    const bargeIn = done.status === "cancelled" && done.status_details?.reason === "turn_detected";
    for (const item of done.output) view(item.id, item.role ?? "tool").li.dataset.status = done.status;
    if (bargeIn) {
      setStatus("Interrupted: you spoke over the reply, so the server stopped it.");
    } else if (done.status === "failed") {
      setStatus(`The reply failed: ${done.status_details?.error?.message ?? "no reason given"}`);
    } else if (ui.turn.dataset.state !== "user") {
      setIndicator(ui.turn, "done", ENDINGS[done.status]);
    }
    if (next) send(next);
    next = null;
  },
};

function handle(event) {
  on[event.type]?.(event);
}

// --- the conversation ---------------------------------------------------------------------------------

function view(id, role) {
  let li = views.get(id);
  if (!li) {
    li = document.createElement("li");
    li.dataset.role = role;
    li.innerHTML = '<span class="who"></span> <span class="speech"></span> <span class="text"></span>';
    li.querySelector(".who").textContent = { user: "You", assistant: "Aural", tool: "Tool" }[role] ?? role;
    ui.items.append(li);
    views.set(id, li);
  }
  return { li, speech: li.querySelector(".speech"), text: li.querySelector(".text") };
}

function show(item) {
  const { li, text } = view(item.id, item.role ?? "tool");
  li.dataset.type = item.type;
  if (item.type === "function_call") {
    li.querySelector(".who").textContent = "Tool call";
    text.textContent = `${item.name}(${item.arguments ?? ""})`;
  } else if (item.type === "function_call_output") {
    li.querySelector(".who").textContent = "Tool result";
    text.textContent = item.output;
  } else {
    const said = item.content.map((part) => part.text ?? part.transcript ?? "").join("");
    if (said) text.textContent = said;
  }
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function getTime() {
  const timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const time = new Intl.DateTimeFormat("en-GB", { dateStyle: "full", timeStyle: "long" }).format(new Date());
  return { time, timezone };
}

// --- controls -----------------------------------------------------------------------------------------

ui.connection.addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket) socket.close();
  else connect();
});

ui.mic.addEventListener("click", () => {
  if (mic) stopMic();
  else startMic().catch((error) => setStatus(`The microphone could not start: ${error.message}`));
});

ui.textTurn.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  if (response) send({ type: "response.cancel" });
  const item = { type: "message", role: "user", content: [{ type: "input_text", text }] };
  send({ type: "conversation.item.create", item });
  const create = { type: "response.create" };
  if (response) next = create; // once the cancelled reply is done
  else send(create);
  ui.text.value = "";
});

for (const control of [ui.toolChoice, ui.maxTokens, ui.transcribe]) {
  control.addEventListener("change", () => { if (socket?.readyState === WebSocket.OPEN) send(sessionUpdate()); });
}
