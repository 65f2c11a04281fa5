// The /phone microphone's audio thread (an AudioWorklet): the page's AudioContext runs at
// 8 kHz, so the browser has already resampled the microphone to the phone rate (its own
// band-limited resampler); this collects the 128-sample render quanta into 20 ms frames of
// 160 samples and hands each frame to the page, which μ-law encodes and sends it.
class MicFrames extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(160);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input yet (the microphone is starting)
    for (let i = 0; i < channel.length; i += 1) {
      this.frame[this.filled] = channel[i];
      this.filled += 1;
      if (this.filled === 160) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Float32Array(160);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("mic-frames", MicFrames);
