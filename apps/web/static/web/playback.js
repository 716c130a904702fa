// Gapless playback of the character's speech: each chunk (mono s16le PCM, base64, at its own rate) is
// an AudioBuffer scheduled at max(now, end of the previous chunk). Every scheduled source is kept
// until it ends, so an interruption stops them all at once.

export class Player {
  constructor(ctx) {
    this.ctx = ctx;
    this.sources = new Set();
    this.end = 0; // context time at which the last scheduled chunk ends
    this.onidle = null; // called when the last scheduled source ends (not after stopAll)
    this.startsAtPerformance = null; // see lastStartPerformanceTime
    this.scheduledAtPerformance = null; // see lastScheduledPerformanceTime
  }

  get active() {
    return this.sources.size;
  }

  // Schedules one chunk; returns the context time it starts playing at (null for an empty chunk).
  schedule(base64, rate) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const samples = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    if (!samples.length) return null;
    const buffer = this.ctx.createBuffer(1, samples.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 0x8000;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const now = this.ctx.currentTime; // read once: it moves in render quanta, ~10 ms apart under load
    const at = Math.max(now, this.end);
    source.start(at);
    this.scheduledAtPerformance = performance.now();
    this.startsAtPerformance = this.scheduledAtPerformance + (at - now) * 1000;
    this.end = at + buffer.duration;
    this.sources.add(source);
    source.addEventListener("ended", () => {
      if (!this.sources.delete(source)) return;
      if (this.sources.size === 0 && this.onidle) this.onidle();
    });
    return at;
  }

  // Stops everything scheduled, now; returns how many sources were stopped.
  stopAll() {
    const stopped = this.sources.size;
    const sources = [...this.sources];
    this.sources.clear();
    for (const source of sources) {
      try {
        source.stop();
      } catch {
        // already stopped
      }
      source.disconnect();
    }
    this.end = 0;
    return stopped;
  }

  // performance.now() time at which the last scheduled chunk starts to be heard (output latency left out),
  // from the same reading of the context's clock that placed it.
  get lastStartPerformanceTime() {
    return this.startsAtPerformance;
  }

  // performance.now() time at which the last chunk was scheduled (the reading its start is placed from).
  get lastScheduledPerformanceTime() {
    return this.scheduledAtPerformance;
  }
}
