// The page side of peerpy's interop suite: the real PeerJS 1.5.5 client,
// driven by tests/interop/browser.py through Playwright.
//
// Everything is reached through `window.harness`.  Values cross the
// Playwright boundary as JSON *descriptions* so that what the page really
// holds stays visible to Python: -0, NaN, undefined and binary types
// (ArrayBuffer vs Uint8Array) are tagged, binary over 4 KiB is summarised
// by its length and SHA-256.
//
//   description := null | boolean | string | finite number (not -0)
//                | [description...] | {key: description...}
//                | {"$num": "-0" | "NaN" | "Infinity" | "-Infinity"}
//                | {"$undefined": true}
//                | {"$type": "ArrayBuffer" | "Uint8Array" | ..., "$hex": "..."}
//                | {"$type": ..., "$len": n, "$sha256": "..."}      (received only)
//                | {"$type": ..., "$b64": "..."}                      (sent only)
//                | {"$date": "ISO string"}                            (received only)
//
// Media calls (Chromium's fake camera and microphone) use the same Peers; see
// "media calls" at the end.  Each call is known by its connectionId.

import { MsgPack } from "/serializer.msgpack.mjs";

const LARGE = 4096;
const logLines = [];
const peers = {};
const records = new Map(); // connectionId -> record

function log(...args) {
  const line = args
    .map((a) => (typeof a === "string" ? a : safeJson(a)))
    .join(" ");
  logLines.push(`${(performance.now() / 1000).toFixed(3)} ${line}`);
  console.log(line);
  if (logLines.length > 2000) logLines.splice(0, 1000);
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------- values

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function fromBase64(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

async function describe(value) {
  if (value === null) return null;
  if (value === undefined) return { $undefined: true };
  if (typeof value === "number") {
    if (Object.is(value, -0) || !Number.isFinite(value)) {
      return { $num: Object.is(value, -0) ? "-0" : String(value) };
    }
    return value;
  }
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    const type = value instanceof ArrayBuffer ? "ArrayBuffer" : value.constructor.name;
    const bytes =
      value instanceof ArrayBuffer
        ? new Uint8Array(value)
        : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (bytes.length > LARGE) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      return { $type: type, $len: bytes.length, $sha256: hex(digest) };
    }
    return { $type: type, $hex: hex(bytes) };
  }
  if (value instanceof Date) return { $date: value.toISOString() };
  if (Array.isArray(value)) return Promise.all(value.map(describe));
  if (typeof value === "object") {
    const out = {};
    for (const [key, item] of Object.entries(value)) out[key] = await describe(item);
    return out;
  }
  return { $other: String(value) };
}

function build(desc) {
  if (desc === null || typeof desc !== "object") return desc;
  if (Array.isArray(desc)) return desc.map(build);
  if ("$num" in desc) return Number(desc.$num);
  if ("$undefined" in desc) return undefined;
  if ("$hex" in desc || "$b64" in desc) {
    const bytes = "$hex" in desc ? fromHex(desc.$hex) : fromBase64(desc.$b64);
    return desc.$type === "ArrayBuffer" ? bytes.buffer : bytes;
  }
  const out = {};
  for (const [key, item] of Object.entries(desc)) out[key] = build(item);
  return out;
}

// ----------------------------------------------------------- waiting helper

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A FIFO whose get() waits for the next item.
class Queue {
  constructor() {
    this.items = [];
    this.waiters = [];
  }
  put(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  get() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

// ------------------------------------------------------------ connections

function info(conn) {
  return {
    connectionId: conn.connectionId,
    peer: conn.peer,
    label: conn.label,
    metadata: conn.metadata === undefined ? null : conn.metadata,
    serialization: conn.serialization,
    reliable: conn.reliable,
    ordered: conn.dataChannel ? conn.dataChannel.ordered : null,
    open: conn.open,
  };
}

// Follow one DataConnection: its data, close and errors.
function track(conn) {
  let closed;
  const record = {
    conn,
    inbox: new Queue(),
    errors: [],
    closed: new Promise((resolve) => (closed = resolve)),
    isClosed: false,
  };
  records.set(conn.connectionId, record);
  conn.on("data", (data) => record.inbox.put(data));
  conn.on("close", () => {
    record.isClosed = true;
    log("close", conn.connectionId);
    closed();
  });
  conn.on("error", (err) => {
    log("connection error", conn.connectionId, err.type, err.message);
    record.errors.push({ type: err.type, message: err.message });
  });
  return record;
}

function record(connectionId) {
  const found = records.get(connectionId);
  if (!found) throw new Error(`no connection ${connectionId}`);
  return found;
}

// -------------------------------------------------------------------- API

window.harness = {
  peers,
  log: () => logLines.slice(),

  // Start a PeerJS Peer called `name` on the page; resolve with its id once
  // the broker said OPEN, reject with the error type if it fails first.
  async start(name, { id, host, port, path, timeoutMs = 10000 }) {
    const peer = new Peer(id, {
      host,
      port,
      path,
      key: "peerjs",
      secure: false,
      config: { iceServers: [] }, // never PeerJS's default public STUN/TURN
      serializers: { MsgPack }, // a plain Peer that also accepts MsgPack
      debug: 2,
      logFunction: (level, ...args) => log(`peerjs[${name}]`, ...args),
    });
    const state = { peer, incoming: new Queue(), errors: [] };
    peers[name] = state;
    peer.on("connection", (conn) => {
      const rec = track(conn);
      conn.on("open", () => state.incoming.put(rec));
    });
    state.incomingCalls = new Queue();
    peer.on("call", (call) => state.incomingCalls.put(trackCall(call)));
    peer.on("error", (err) => {
      log(`peer error [${name}]`, err.type, err.message);
      state.errors.push({ type: err.type, message: err.message });
    });
    const opened = new Promise((resolve, reject) => {
      peer.on("open", resolve);
      peer.on("error", (err) => {
        if (!peer.open) reject(new Error(err.type));
      });
    });
    return withTimeout(opened, timeoutMs, `peer ${name} open`);
  },

  // The errors peer `name` emitted so far ({type, message}).
  peerErrors: (name) => peers[name].errors.slice(),

  // Wait until peer `name` emitted an error of `type`.
  async waitPeerError(name, type, timeoutMs = 10000) {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const found = peers[name].errors.find((e) => e.type === type);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`timeout after ${timeoutMs} ms: peer ${name} error ${type}`);
  },

  destroy(name) {
    const state = peers[name];
    if (state) state.peer.destroy();
    delete peers[name];
  },

  // Connect peer `name` to `remote`; resolve with the connection's info once open.
  async connect(name, remote, options, timeoutMs = 15000) {
    const conn = peers[name].peer.connect(remote, options);
    const rec = track(conn);
    const opened = new Promise((resolve, reject) => {
      conn.on("open", () => resolve(info(conn)));
      conn.on("error", (err) => reject(new Error(`${err.type}: ${err.message}`)));
    });
    return withTimeout(opened, timeoutMs, `connect to ${remote}`).catch((err) => {
      rec.conn.close();
      throw err;
    });
  },

  // The incoming connection `connectionId` of peer `name`, once open.  Other
  // connections that opened before it (left over by a failed test) are closed.
  async accept(name, connectionId, timeoutMs = 15000) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = Math.max(0, deadline - performance.now());
      const rec = await withTimeout(peers[name].incoming.get(), left, "incoming connection");
      if (rec.conn.connectionId === connectionId) return info(rec.conn);
      log("accept: closing stray", rec.conn.connectionId);
      rec.conn.close();
    }
  },

  info: (connectionId) => info(record(connectionId).conn),
  connErrors: (connectionId) => record(connectionId).errors.slice(),

  // Send each described value, in order.
  send(connectionId, descriptionsJson) {
    const conn = record(connectionId).conn;
    for (const desc of JSON.parse(descriptionsJson)) conn.send(build(desc));
  },

  // The next `count` received values, described, as a JSON string.
  async recv(connectionId, count = 1, timeoutMs = 15000) {
    const rec = record(connectionId);
    const out = [];
    for (let i = 0; i < count; i++) {
      const value = await withTimeout(rec.inbox.get(), timeoutMs, `message ${i + 1}/${count}`);
      out.push(await describe(value));
    }
    return JSON.stringify(out);
  },

  // Values received and not yet read, described, as a JSON string.
  async drain(connectionId) {
    const rec = record(connectionId);
    const out = [];
    while (rec.inbox.items.length) out.push(await describe(rec.inbox.items.shift()));
    return JSON.stringify(out);
  },

  close(connectionId, flush) {
    record(connectionId).conn.close({ flush });
  },

  isClosed: (connectionId) => record(connectionId).isClosed,

  // Resolve true once the connection emitted `close`, false after the timeout.
  async waitClosed(connectionId, timeoutMs = 10000) {
    const rec = record(connectionId);
    try {
      await withTimeout(rec.closed, timeoutMs, "close");
      return true;
    } catch {
      return false;
    }
  },
};

// ------------------------------------------------------------ media calls

const calls = new Map(); // connectionId -> call record

// Follow one MediaConnection: every `stream` event, close and errors.
function trackCall(call) {
  let closed;
  let streamed;
  const rec = {
    call,
    streams: [], // one entry per `stream` event
    firstStream: new Promise((resolve) => (streamed = resolve)),
    errors: [],
    closed: new Promise((resolve) => (closed = resolve)),
    isClosed: false,
    local: null,
  };
  calls.set(call.connectionId, rec);
  call.on("stream", (stream) => {
    rec.streams.push({
      id: stream ? stream.id : null,
      audio: stream ? stream.getAudioTracks().length : 0,
      video: stream ? stream.getVideoTracks().length : 0,
    });
    log("stream", call.connectionId, rec.streams.length, stream && stream.id);
    streamed(stream);
  });
  call.on("close", () => {
    rec.isClosed = true;
    log("call close", call.connectionId);
    if (rec.local) rec.local.getTracks().forEach((t) => t.stop());
    closed();
  });
  call.on("error", (err) => {
    log("call error", call.connectionId, err.type, err.message);
    rec.errors.push({ type: err.type, message: err.message });
  });
  return rec;
}

function callRecord(connectionId) {
  const found = calls.get(connectionId);
  if (!found) throw new Error(`no call ${connectionId}`);
  return found;
}

function callInfo(rec) {
  const call = rec.call;
  return {
    connectionId: call.connectionId,
    peer: call.peer,
    metadata: call.metadata === undefined ? null : call.metadata,
    open: call.open,
    type: call.type,
    streams: rec.streams.slice(),
    errors: rec.errors.slice(),
    closed: rec.isClosed,
  };
}

// The fake camera (small, to spare the CPU) and microphone.
function userMedia() {
  return navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 320, height: 240, frameRate: 15 },
  });
}

// inbound-rtp statistics by kind (the fields a media check needs).
async function inboundStats(pc) {
  const out = {};
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    out[s.kind] = {
      packetsReceived: s.packetsReceived || 0,
      framesDecoded: s.framesDecoded || 0,
      frameWidth: s.frameWidth || 0,
      frameHeight: s.frameHeight || 0,
      totalSamplesReceived: s.totalSamplesReceived || 0,
      concealedSamples: s.concealedSamples || 0,
      totalAudioEnergy: s.totalAudioEnergy || 0,
      codec: s.codecId ? report.get(s.codecId).mimeType : null,
    };
  });
  return out;
}

// Coarse colours along the middle row of the video's current frame.
function sampleColours(video, samples = 64) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0);
  const row = ctx.getImageData(0, Math.floor(canvas.height / 2), canvas.width, 1).data;
  const seen = new Set();
  for (let i = 0; i < samples; i++) {
    const x = Math.floor(((i + 0.5) * canvas.width) / samples);
    const [r, g, b] = row.slice(4 * x, 4 * x + 3);
    seen.add([r, g, b].map((c) => (c > 96 ? 1 : 0)).join(""));
  }
  return Array.from(seen).sort();
}

// The loudest frequency (Hz) of an audio track, through an AnalyserNode.
async function dominantFrequency(stream, ms = 400) {
  const ctx = new AudioContext();
  try {
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 4096;
    source.connect(analyser);
    await new Promise((r) => setTimeout(r, ms));
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    return { hz: (best * ctx.sampleRate) / analyser.fftSize, db: bins[best], state: ctx.state };
  } finally {
    await ctx.close();
  }
}

Object.assign(window.harness, {
  // Call `remote` from peer `name` with the fake camera and microphone;
  // return the call's connectionId at once (before it is answered).
  async call(name, remote, options = {}) {
    const stream = await userMedia();
    const call = peers[name].peer.call(remote, stream, options);
    const rec = trackCall(call);
    rec.local = stream;
    return call.connectionId;
  },

  // Answer peer `name`'s incoming call `connectionId` with the fake camera
  // and microphone, or receive only if `send` is false.  Calls that rang
  // before it (left over by a failed test) are closed.
  async answerCall(name, connectionId, send = true, timeoutMs = 15000) {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = Math.max(0, deadline - performance.now());
      const rec = await withTimeout(peers[name].incomingCalls.get(), left, "incoming call");
      if (rec.call.connectionId !== connectionId) {
        log("answerCall: closing stray", rec.call.connectionId);
        rec.call.close();
        continue;
      }
      if (send) rec.local = await userMedia();
      rec.call.answer(rec.local || undefined);
      return callInfo(rec);
    }
  },

  callInfo: (connectionId) => callInfo(callRecord(connectionId)),

  // Check that the remote media of call `connectionId` decodes: play it in a
  // <video> until `frames` frames were presented, sample the picture, find
  // the audio's loudest frequency, and report inbound-rtp statistics taken
  // `intervalMs` apart.
  async checkMedia(connectionId, frames = 10, intervalMs = 500, timeoutMs = 15000) {
    const rec = callRecord(connectionId);
    const stream = await withTimeout(rec.firstStream, timeoutMs, "stream event");
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    document.body.appendChild(video);
    try {
      await withTimeout(video.play(), timeoutMs, "video.play()");
      const presented = [];
      await withTimeout(
        new Promise((resolve) => {
          const onFrame = (now, meta) => {
            presented.push(meta.mediaTime);
            if (presented.length >= frames) resolve();
            else video.requestVideoFrameCallback(onFrame);
          };
          video.requestVideoFrameCallback(onFrame);
        }),
        timeoutMs,
        `${frames} video frames`,
      );
      const before = await inboundStats(rec.call.peerConnection);
      const tone = await dominantFrequency(stream, intervalMs);
      const after = await inboundStats(rec.call.peerConnection);
      return {
        videoWidth: video.videoWidth,
        videoHeight: video.videoHeight,
        mediaTimes: [presented[0], presented[presented.length - 1]],
        colours: sampleColours(video),
        tone,
        before,
        after,
      };
    } finally {
      video.srcObject = null;
      video.remove();
    }
  },

  hangUp(connectionId) {
    callRecord(connectionId).call.close();
  },

  // Resolve true once call `connectionId` emitted `close`, false after the timeout.
  async waitCallClosed(connectionId, timeoutMs = 10000) {
    try {
      await withTimeout(callRecord(connectionId).closed, timeoutMs, "call close");
      return true;
    } catch {
      return false;
    }
  },
});

log("harness ready");
