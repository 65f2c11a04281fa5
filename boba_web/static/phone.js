// The staff test phone (CONTRACT §9): a call to the shop from the browser over
// WS /phone/ws, which speaks Twilio's Media Streams messages plus three extensions:
//   to the server:   {"event": "text", "text": "..."}            what the caller typed
//   from the server: {"event": "transcript", "role", "content"}   what was said
//                    {"event": "function", "name", "arguments", "result"}
// Agent audio arrives as μ-law 8 kHz "media" and is played; each "mark" is echoed once
// the audio before it has played (as Twilio does), "clear" drops what is queued. With the
// microphone on, caller audio goes out as 20 ms μ-law "media" frames.
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
  let micBuffer = [];

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
    if (!audio) audio = new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  function play(payload) {
    const ctx = ensureAudio();
    const bytes = base64ToBytes(payload);
    const buffer = ctx.createBuffer(1, bytes.length, 8000);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < bytes.length; i += 1) channel[i] = ulawToLinear(bytes[i]) / 32768;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    playAt = Math.max(playAt, ctx.currentTime + 0.05);
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
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const source = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(2048, 1, 1);
    const ratio = ctx.sampleRate / 8000;
    let carry = 0;
    node.onaudioprocess = (event) => {
      const input = event.inputBuffer.getChannelData(0);
      // Average each 1/8000 s span: a crude low-pass before decimating to 8 kHz.
      let pos = carry;
      for (; pos + ratio <= input.length; pos += ratio) {
        let sum = 0;
        let n = 0;
        for (let i = Math.floor(pos); i < Math.floor(pos + ratio); i += 1) { sum += input[i]; n += 1; }
        const sample = Math.max(-1, Math.min(1, n ? sum / n : 0));
        micBuffer.push(linearToUlaw(Math.round(sample * 32767)));
      }
      carry = Math.max(0, pos - input.length);
      while (micBuffer.length >= 160) {
        const frame = Uint8Array.from(micBuffer.splice(0, 160));
        chunk += 1;
        send({
          event: "media", streamSid, sequenceNumber: nextSeq(),
          media: { track: "inbound", chunk: String(chunk), timestamp: String(chunk * 20),
                   payload: bytesToBase64(frame) },
        });
      }
    };
    source.connect(node);
    node.connect(ctx.destination);
    mic = { stream, node, source };
  }

  function stopMic() {
    if (!mic) return;
    mic.node.disconnect();
    mic.source.disconnect();
    mic.stream.getTracks().forEach((t) => t.stop());
    mic = null;
    micBuffer = [];
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
