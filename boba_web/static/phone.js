// The staff test phone (CONTRACT §9): a call to the shop from the browser over
// WS /phone/ws, which speaks Twilio's Media Streams messages plus three extensions:
//   to the server:   {"event": "text", "text": "..."}            what the caller typed
//   from the server: {"event": "transcript", "role", "content"}   what was said
//                    {"event": "function", "name", "arguments", "result"}
// Agent audio arrives as μ-law 8 kHz "media" and is played; each "mark" is echoed once
// the audio before it has played (as Twilio does), "clear" drops what is queued at once.
// With the microphone on, caller audio goes out as 20 ms μ-law "media" frames.
//
// Audio runs in one AudioContext at the phone rate, 8 kHz: the browser resamples the
// microphone into it (so resampling happens in the browser, with its own band-limited
// resampler), an AudioWorklet (phone-worklet.js) cuts it into 160-sample frames, and agent
// audio (μ-law 8 kHz) plays without any conversion, through a jitter buffer: playback of a
// reply starts JITTER_S after its first frame arrives, and later frames are scheduled end
// to end, so frames arriving unevenly over the network still play without gaps.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const dialButton = $("dial");
  const hangupButton = $("hangup");
  const micBox = $("mic");
  const callerInput = $("caller");
  const form = $("say");
  const textInput = $("text");
  const sendButton = $("send");
  const transcript = $("transcript");
  const connection = $("connection");

  let ws = null;
  let streamSid = "";
  let seq = 0;
  let chunk = 0;
  let audio = null; // AudioContext
  let playAt = 0; // when the queued agent audio ends (AudioContext time)
  let sources = [];
  let markTimers = [];
  let mic = null; // {stream, node, source}
  const JITTER_S = 0.12; // how much agent audio is buffered before a reply starts playing
  const PHONE_RATE = 8000;
  const WORKLET_URL = document.currentScript.src.replace(/phone\.js(\?.*)?$/, "phone-worklet.js");

  function status(text, state) {
    connection.textContent = text;
    connection.dataset.state = state;
  }

  function line(kind, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    transcript.appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function nextSeq() {
    seq += 1;
    return String(seq);
  }

  // --- μ-law (G.711), the same tables Twilio uses ---------------------------------------
  function ulawToLinear(u) {
    u = ~u & 0xff;
    const sign = u & 0x80;
    const exponent = (u >> 4) & 0x07;
    const mantissa = u & 0x0f;
    let sample = ((mantissa << 3) + 0x84) << exponent;
    sample -= 0x84;
    return sign ? -sample : sample;
  }

  const SEGMENT_ENDS = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

  // 16-bit linear to μ-law, bit-exact with the reference coder (and Python's audioop).
  function linearToUlaw(sample) {
    let pcm = sample >> 2; // 14 bits
    let mask = 0xff;
    if (pcm < 0) { pcm = -pcm; mask = 0x7f; }
    if (pcm > 8159) pcm = 8159;
    pcm += 0x21;
    let segment = 0;
    while (segment < 8 && pcm > SEGMENT_ENDS[segment]) segment += 1;
    if (segment >= 8) return 0x7f ^ mask;
    return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0f)) ^ mask;
  }

  function base64ToBytes(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function bytesToBase64(bytes) {
    let raw = "";
    for (let i = 0; i < bytes.length; i += 1) raw += String.fromCharCode(bytes[i]);
    return btoa(raw);
  }

  // --- agent audio ----------------------------------------------------------------------
  function ensureAudio() {
    if (!audio) audio = new AudioContext({ sampleRate: PHONE_RATE });
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  function play(payload) {
    const ctx = ensureAudio();
    const bytes = base64ToBytes(payload);
    const buffer = ctx.createBuffer(1, bytes.length, PHONE_RATE);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < bytes.length; i += 1) channel[i] = ulawToLinear(bytes[i]) / 32768;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    // Underrun (nothing queued): start again JITTER_S from now; else right after the queue.
    if (playAt < ctx.currentTime + 0.005) playAt = ctx.currentTime + JITTER_S;
    source.start(playAt);
    playAt += buffer.duration;
    sources.push(source);
    source.onended = () => { sources = sources.filter((s) => s !== source); };
  }

  function echoMark(name) {
    send({ event: "mark", streamSid, sequenceNumber: nextSeq(), mark: { name } });
  }

  function markAfterPlayback(name) {
    const ctx = audio;
    const wait = ctx ? Math.max(0, playAt - ctx.currentTime) * 1000 : 0;
    const timer = setTimeout(() => {
      markTimers = markTimers.filter((t) => t.timer !== timer);
      echoMark(name);
    }, wait);
    markTimers.push({ timer, name });
  }

  function clearPlayback() {
    sources.forEach((s) => { try { s.stop(); } catch (e) { /* already stopped */ } });
    sources = [];
    if (audio) playAt = audio.currentTime;
    const pending = markTimers;
    markTimers = [];
    pending.forEach((t) => { clearTimeout(t.timer); echoMark(t.name); });
  }

  // --- the microphone --------------------------------------------------------------------
  async function startMic() {
    const ctx = ensureAudio();
    await ctx.audioWorklet.addModule(WORKLET_URL);
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false },
    });
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-frames", { numberOfInputs: 1, numberOfOutputs: 0 });
    node.port.onmessage = (event) => {
      const samples = event.data; // Float32Array(160): 20 ms at 8 kHz
      const frame = new Uint8Array(samples.length);
      for (let i = 0; i < samples.length; i += 1) {
        frame[i] = linearToUlaw(Math.round(Math.max(-1, Math.min(1, samples[i])) * 32767));
      }
      chunk += 1;
      send({
        event: "media", streamSid, sequenceNumber: nextSeq(),
        media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20),
                 payload: bytesToBase64(frame) },
      });
    };
    source.connect(node);
    mic = { stream, node, source };
  }

  function stopMic() {
    if (!mic) return;
    mic.node.port.onmessage = null;
    mic.node.disconnect();
    mic.source.disconnect();
    mic.stream.getTracks().forEach((t) => t.stop());
    mic = null;
  }

  micBox.addEventListener("change", async () => {
    if (!ws) return;
    if (micBox.checked) {
      try { await startMic(); } catch (e) {
        micBox.checked = false;
        line("note", "The microphone is not available here (browsers allow it only on https or localhost).");
      }
    } else {
      stopMic();
    }
  });

  // --- the call ---------------------------------------------------------------------------
  function inCall(on) {
    dialButton.disabled = on;
    hangupButton.disabled = !on;
    textInput.disabled = !on;
    sendButton.disabled = !on;
    if (on) textInput.focus();
  }

  dialButton.addEventListener("click", () => {
    ensureAudio();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${scheme}//${location.host}/phone/ws`);
    streamSid = "MZ" + Array.from(crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0")).join("");
    seq = 0;
    chunk = 0;
    transcript.textContent = "";
    status("calling…", "connecting");
    ws.onopen = async () => {
      const params = {};
      if (callerInput.value.trim()) params.caller = callerInput.value.trim();
      send({ event: "connected", protocol: "Call", version: "1.0.0" });
      send({
        event: "start", sequenceNumber: nextSeq(), streamSid,
        start: { streamSid, callSid: "", accountSid: "", tracks: ["inbound"],
                 mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
                 customParameters: params },
      });
      status("in a call", "live");
      inCall(true);
      if (micBox.checked) {
        try { await startMic(); } catch (e) { micBox.checked = false; }
      }
    };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      switch (message.event) {
        case "media": play(message.media.payload); break;
        case "mark": markAfterPlayback(message.mark.name); break;
        case "clear": clearPlayback(); break;
        case "transcript":
          line(message.role === "assistant" ? "agent" : "caller",
               `${message.role === "assistant" ? "agent" : "caller"}: ${message.content}`);
          break;
        case "function":
          line("fn", `fn: ${message.name}(${message.arguments}) -> ${message.result}`);
          break;
        default: break;
      }
    };
    ws.onclose = (event) => {
      stopMic();
      inCall(false);
      ws = null;
      status(event.code === 1000 ? "call ended" : `call ended (${event.code})`, "idle");
    };
    ws.onerror = () => status("could not connect", "down");
  });

  hangupButton.addEventListener("click", () => {
    send({ event: "stop", sequenceNumber: nextSeq(), streamSid, stop: { accountSid: "", callSid: "" } });
    if (ws) ws.close(1000);
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textInput.value.trim();
    if (!text) return;
    send({ event: "text", text });
    textInput.value = "";
  });
}());
