// Microphone capture on the audio thread: the AudioContext runs at the device's own rate (whatever it
// is: 44.1, 48, 96 kHz…); here the signal is mixed to mono, low-passed below 8 kHz (a windowed-sinc
// FIR, so nothing above the new Nyquist folds back into the speech band), resampled to 16 kHz and
// posted to the page as s16le frames of FRAME_MS, with their level (RMS, 0-1).
// A "flush" message posts the samples of the frame being filled at once, then {flushed: true}:
// push-to-talk ends its stream the moment the button is released, not on the next full frame.

const TARGET_RATE = 16000;

// The FIR's length grows with the rate so its transition band stays about 4 kHz wide in hertz
// (63 taps at 48 kHz): from 7.2 kHz it reaches its stopband near 11 kHz, where little speech is.
function lowPass(rate) {
  const TAPS = 2 * Math.round((31 * rate) / 48000) + 1;
  const cutoff = (0.45 * TARGET_RATE) / rate; // 7.2 kHz, as a fraction of the input rate
  const taps = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const n = i - mid;
    const sinc = n === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * n) / (Math.PI * n);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * blackman;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum; // unity gain at 0 Hz
  return taps;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options.processorOptions && options.processorOptions.frameMs) || 20;
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.taps = this.step > 1 ? lowPass(sampleRate) : null; // upsampling needs no anti-aliasing
    this.ring = new Float32Array(this.taps ? this.taps.length : 1); // the last input samples, for the FIR
    this.at = 0;
    this.prev = 0; // the previous filtered sample, for linear interpolation
    this.t = 0; // position of the next output sample, in input samples after `prev`
    this.frame = new Int16Array((TARGET_RATE * frameMs) / 1000);
    this.fill = 0;
    this.energy = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  post() {
    if (!this.fill) return;
    const pcm = this.frame.slice(0, this.fill);
    const rms = Math.sqrt(this.energy / this.fill);
    this.fill = 0;
    this.energy = 0;
    this.port.postMessage({ pcm: pcm.buffer, rms }, [pcm.buffer]);
  }

  filter(x) {
    if (!this.taps) return x;
    const ring = this.ring;
    const n = ring.length;
    ring[this.at] = x;
    this.at = (this.at + 1) % n;
    let y = 0;
    for (let i = 0, j = this.at; i < n; i++, j = j + 1 === n ? 0 : j + 1) y += this.taps[i] * ring[j];
    return y;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.energy += s * s;
    if (this.fill === this.frame.length) this.post();
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const length = input[0].length;
    for (let i = 0; i < length; i++) {
      let x = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) x += input[c][i];
        x /= channels;
      }
      const y = this.filter(x);
      while (this.t <= 1) {
        this.emit(this.prev + (y - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = y;
    }
    return true;
  }
}

registerProcessor("pt-capture", CaptureProcessor);
