// peerpy-rooms-sfu.js: a room's media through Janus's VideoRoom, for peerpy-rooms.js.
//
// The broker serves it beside peerpy-rooms.js, which imports it only when the
// broker says a room's media goes through an SFU (ROOM-MEMBERS with "sfu",
// docs/rooms.md).  It does what the Python SDK does (peerpy.rooms.sfu), so
// browsers and Python members share SFU rooms:
// - it opens Janus's WebSocket API ("janus-protocol"), creates a session and
//   joins the VideoRoom room as a publisher shown as our peer id, with the PIN,
//   the token and the participant id the broker gave us (the broker kicks a
//   participant whose id does not match the member it shows), publishing
//   nothing yet (a viewer still receives);
// - room.call(stream) publishes the stream once: one RTCPeerConnection to
//   Janus, whatever the number of members;
// - each publisher Janus lists gets a subscriber handle and a receive-only
//   RTCPeerConnection; its tracks reach the room as "stream"(member, stream);
// - a feed that leaves is hung up; ROOM-SFU (the room moved, or has no SFU
//   now) closes everything and joins the new place, publishing again.
// Offers and answers carry every candidate (we wait for ICE gathering); the
// candidates Janus trickles are added to their handle's connection.

const VIDEOROOM = "janus.plugin.videoroom";
const KEEPALIVE_MS = 20000;
const TIMEOUT_MS = 10000;
const GATHERING_MS = 3000;

/** One WebSocket to Janus and its session: requests matched to replies, events out. */
class JanusSession {
  constructor(url, onEvent, onClose) {
    this.ws = new WebSocket(url, "janus-protocol");
    this.id = 0;
    this._next = 0;
    this._waiting = new Map(); // transaction -> {resolve, reject, async}
    this._onEvent = onEvent;
    this.ws.onmessage = (message) => this._frame(JSON.parse(message.data));
    this.ws.onclose = () => {
      clearInterval(this._keepalive);
      for (const { reject } of this._waiting.values()) reject(new Error("Janus closed"));
      this._waiting.clear();
      onClose();
    };
  }

  async open() {
    if (this.ws.readyState !== WebSocket.OPEN) {
      await new Promise((resolve, reject) => {
        this.ws.addEventListener("open", resolve, { once: true });
        this.ws.addEventListener("close", () => reject(new Error("cannot reach Janus")), {
          once: true,
        });
      });
    }
    this.id = (await this.call({ janus: "create" })).data.id;
    this._keepalive = setInterval(() => this.call({ janus: "keepalive" }).catch(() => {}), KEEPALIVE_MS);
  }

  /** Send a request; resolve with {data, jsep} (async: the event after Janus's ack). */
  call(message, async = false) {
    const transaction = `t${++this._next}`;
    const frame = { ...message, transaction };
    if (this.id) frame.session_id = this.id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiting.delete(transaction);
        reject(new Error(`Janus did not answer ${message.janus}`));
      }, TIMEOUT_MS);
      const done = (f) => (value) => {
        clearTimeout(timer);
        f(value);
      };
      this._waiting.set(transaction, { resolve: done(resolve), reject: done(reject), async });
      this.ws.send(JSON.stringify(frame));
    });
  }

  attach() {
    return this.call({ janus: "attach", plugin: VIDEOROOM }).then((reply) => reply.data.id);
  }

  message(handle, body, jsep = null) {
    const request = { janus: "message", handle_id: handle, body };
    if (jsep) request.jsep = jsep;
    return this.call(request, true);
  }

  close() {
    this.ws.close();
  }

  _frame(message) {
    const pending = this._waiting.get(message.transaction);
    const data = (message.plugindata && message.plugindata.data) || message.data || {};
    if (pending && !(message.janus === "ack" && pending.async)) {
      if (message.janus === "success" || message.janus === "error" || message.janus === "event") {
        this._waiting.delete(message.transaction);
        const error = message.error || (data.error_code && { code: data.error_code, reason: data.error });
        if (error) pending.reject(new Error(`Janus error ${error.code}: ${error.reason}`));
        else pending.resolve({ data, jsep: message.jsep || null });
        return;
      }
    }
    if (!["ack", "success", "error"].includes(message.janus)) this._onEvent(message, data);
  }
}

function waitGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHERING_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** The media of one room through Janus (see the top of this file). */
export class SfuMedia {
  constructor(me, config, onStream) {
    this._me = me; // our peer id: our display name in the VideoRoom
    this._config = config; // the page's RTCConfiguration (PeerJS's options.config)
    this._onStream = onStream; // (member, MediaStream)
    this._info = null;
    this._session = null;
    this._ready = null; // resolves once the session joined the room
    this._stream = null; // what room.call gave us
    this._published = null; // our publishing RTCPeerConnection
    this._publishedAs = null; // [session, stream] it carries: publishing twice is once
    this._publishing = Promise.resolve(); // publications, one at a time
    this._feeds = new Map(); // feed id -> {member, handle, pc}
    this._pcs = new Map(); // handle -> RTCPeerConnection with Janus's description
    this._trickled = new Map(); // handle -> candidates that came first
    this.why = "the broker has not said where the room's SFU is yet";
  }

  /** The broker's word on the room's SFU: join it (again), or there is none now. */
  use(info, why = "") {
    const same = info && this._info && info.url === this._info.url && info.room === this._info.room;
    this._info = info;
    if (same && this._session) return;
    this._end();
    if (!info) {
      this.why = why || "the room's SFU is unreachable";
      return;
    }
    const session = new JanusSession(
      info.url,
      (message, data) => this._event(message, data),
      () => this._lost(session),
    );
    this._session = session;
    this._ready = this._join(session, info);
    this._ready.catch((err) => console.warn(`peerpy-rooms: joining the SFU failed: ${err.message}`));
  }

  /** Publish `stream` to the room's SFU (again after it moves). */
  async call(stream) {
    this._stream = stream;
    if (!this._ready) throw new Error(`cannot publish: ${this.why}`);
    await this._ready;
    await this._publish();
  }

  /** A member left: hang up its feeds. */
  drop(member) {
    for (const [feed, sub] of this._feeds) if (sub.member === member) this._unsubscribe(feed);
  }

  close() {
    this._info = null;
    this._end();
  }

  _end() {
    const session = this._session;
    this._session = null;
    this._ready = null;
    if (session) session.close();
    this._closePcs();
  }

  _lost(session) {
    if (this._session !== session) return;
    this._session = null;
    this._ready = null;
    this._closePcs();
    this.why = "lost the room's SFU; waiting for the broker";
    console.warn(`peerpy-rooms: ${this.why}`);
  }

  _closePcs() {
    for (const sub of this._feeds.values()) if (sub.pc) sub.pc.close();
    this._feeds.clear();
    this._pcs.clear();
    this._trickled.clear();
    if (this._published) this._published.close();
    this._published = null;
    this._publishedAs = null;
  }

  async _join(session, info) {
    await session.open();
    this._publisher = await session.attach();
    const joined = await session.message(this._publisher, {
      request: "join", ptype: "publisher", room: info.room, pin: info.pin, token: info.token,
      id: info.id, display: this._me,
    });
    this._publishers(joined.data.publishers);
    if (this._stream) this._publish().catch((err) => console.warn(`peerpy-rooms: ${err.message}`));
  }

  _publish() {
    const next = this._publishing.catch(() => {}).then(() => this._offer());
    this._publishing = next;
    return next;
  }

  async _offer() {
    const session = this._session;
    const stream = this._stream;
    if (!session || !stream) return;
    const as = this._publishedAs;
    if (as && as[0] === session && as[1] === stream) return;
    this._publishedAs = null;
    if (this._published) this._published.close();
    const pc = (this._published = new RTCPeerConnection(this._config));
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc);
    const kinds = stream.getTracks().map((track) => track.kind);
    const reply = await session.message(
      this._publisher,
      { request: "configure", audio: kinds.includes("audio"), video: kinds.includes("video") },
      { type: "offer", sdp: pc.localDescription.sdp },
    );
    await pc.setRemoteDescription(reply.jsep);
    this._described(this._publisher, pc);
    this._publishedAs = [session, stream];
  }

  _publishers(list) {
    for (const publisher of list || []) {
      const { id: feed, display: member } = publisher;
      if (typeof feed !== "number" || typeof member !== "string") continue;
      if (member === this._me || this._feeds.has(feed)) continue;
      this._feeds.set(feed, { member, handle: 0, pc: null });
      this._subscribe(feed).catch((err) => {
        console.warn(`peerpy-rooms: subscribing to ${member} failed: ${err.message}`);
        this._feeds.delete(feed);
      });
    }
  }

  async _subscribe(feed) {
    const session = this._session;
    const info = this._info;
    const sub = this._feeds.get(feed);
    sub.handle = await session.attach();
    const offer = await session.message(sub.handle, {
      request: "join", ptype: "subscriber", room: info.room, pin: info.pin, token: info.token,
      streams: [{ feed }],
    });
    const pc = (sub.pc = new RTCPeerConnection(this._config));
    const stream = new MediaStream();
    pc.ontrack = (event) => stream.addTrack(event.track);
    await pc.setRemoteDescription(offer.jsep);
    this._described(sub.handle, pc);
    await pc.setLocalDescription(await pc.createAnswer());
    await waitGathering(pc);
    await session.message(
      sub.handle,
      { request: "start" },
      { type: "answer", sdp: pc.localDescription.sdp },
    );
    if (this._feeds.get(feed) === sub) this._onStream(sub.member, stream);
  }

  _unsubscribe(feed) {
    const sub = this._feeds.get(feed);
    if (!sub) return;
    this._feeds.delete(feed);
    if (this._session && sub.handle) {
      this._session.call({ janus: "detach", handle_id: sub.handle }).catch(() => {});
    }
    this._pcs.delete(sub.handle);
    if (sub.pc) sub.pc.close();
  }

  _described(handle, pc) {
    this._pcs.set(handle, pc);
    for (const candidate of this._trickled.get(handle) || []) this._candidate(pc, candidate);
    this._trickled.delete(handle);
  }

  _candidate(pc, candidate) {
    if (!candidate || candidate.completed || typeof candidate.candidate !== "string") return;
    pc.addIceCandidate(candidate).catch(() => {});
  }

  _event(message, data) {
    if (message.janus === "event") {
      this._publishers(data.publishers);
      for (const key of ["unpublished", "leaving"]) {
        if (typeof data[key] === "number") this._unsubscribe(data[key]);
      }
    } else if (message.janus === "trickle") {
      const pc = this._pcs.get(message.sender);
      if (pc) this._candidate(pc, message.candidate);
      else {
        const queued = this._trickled.get(message.sender) || [];
        queued.push(message.candidate);
        this._trickled.set(message.sender, queued);
      }
    } else if (message.janus === "hangup" || message.janus === "detached") {
      for (const [feed, sub] of this._feeds) if (sub.handle === message.sender) this._unsubscribe(feed);
    }
  }
}
