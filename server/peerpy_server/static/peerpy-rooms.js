// peerpy-rooms.js: peerpy's rooms for a PeerJS 1.5 page (an ES module, no dependency).
//
// The broker (peerpy-server) serves it at <path>peerpy-rooms.js.  It speaks the
// broker's rooms extension over the page's own PeerJS broker socket and opens
// one PeerJS DataConnection per member, exactly as the Python SDK does
// (peerpy.room), so browsers and Python peers share rooms:
//
//   import { joinRoom } from "http://127.0.0.1:9000/peerpy-rooms.js";
//   const peer = new Peer("alice", { host: "127.0.0.1", port: 9000, path: "/" });
//   peer.on("open", async () => {
//     const room = await joinRoom(peer, "lobby", { metadata: { name: "Alice" } });
//     room.on("join", (id, metadata) => ...);   room.on("leave", (id) => ...);
//     room.on("data", (id, data) => ...);       room.on("stream", (id, stream) => ...);
//     room.send("hello, everyone");             room.send("psst", { to: "bob" });
//     room.members;                              // Map: id -> metadata
//     await room.call(localStream);             // our media to every member (mesh)
//     room.leave();
//   });
//
// The rules, the same on both sides:
// - ROOM-JOIN/ROOM-LEAVE go to the broker; ROOM-MEMBERS (the others, our join's
//   answer), ROOM-JOIN and ROOM-LEAVE with src (someone came or went) and
//   ROOM-ERROR (refused) come back.  joinRoom resolves on ROOM-MEMBERS; a broker
//   that never answers has no rooms (PeerJS's peer, an older peerpy-server).
// - The member with the smaller id (JavaScript's < on the ids) opens the
//   connection: peer.connect(id, {label: "peerpy-room:NAME", metadata:
//   {"peerpy-room": NAME}, serialization: "binary", reliable: true}).  The
//   metadata marks room connections and calls: they also reach the page's own
//   "connection"/"call" handlers, which should skip them (isRoomConnection).
// - The sender of a value is the peer at the other end of its connection.
// - A member whose open connection closes has left, for us (a crash shows in
//   PeerJS within its ICE timeouts, or through the broker at once).
// - When the broker runs with Janus (ROOM-MEMBERS carries "sfu"), call() and
//   "stream" go through Janus's VideoRoom instead of the mesh: one upload per
//   member (peerpy-rooms-sfu.js, served beside this file); data stays on the mesh.

import { SfuMedia } from "./peerpy-rooms-sfu.js";

export const ROOM_KEY = "peerpy-room";
export const NO_ROOMS =
  "this broker has no rooms (PeerJS's peer server, or an older peerpy-server)";

/** The broker refused a join: err.type is room-full, invalid-room, room-forbidden... */
export class RoomError extends Error {
  constructor(type, message) {
    super(message);
    this.name = "RoomError";
    this.type = type;
  }
}

/** Whether a PeerJS DataConnection or MediaConnection belongs to a room. */
export function isRoomConnection(conn) {
  const meta = conn && conn.metadata;
  return !!meta && typeof meta === "object" && typeof meta[ROOM_KEY] === "string";
}

const hubs = new WeakMap(); // peer -> its rooms

/** Join room `name`; resolves with the Room once the broker sent the members. */
export function joinRoom(peer, name, { metadata = null, timeout = 5000 } = {}) {
  let hub = hubs.get(peer);
  if (!hub) {
    hub = new Hub(peer);
    hubs.set(peer, hub);
  }
  return hub.join(name, metadata, timeout);
}

class Hub {
  constructor(peer) {
    this.peer = peer;
    this.rooms = new Map();
    peer.socket.on("message", (message) => this.frame(message));
    peer.on("connection", (conn) => this.incoming(conn));
    peer.on("call", (call) => this.incoming(call));
    peer.on("open", () => {
      // Registered again after a lost broker session: join every room again.
      for (const room of this.rooms.values()) if (room.joined) room._sendJoin();
    });
  }

  join(name, metadata, timeout) {
    if (this.rooms.has(name)) return Promise.reject(new Error(`already in room ${name}`));
    const room = new Room(this, name, metadata);
    this.rooms.set(name, room);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.rooms.delete(name);
        reject(new RoomError("rooms-unsupported", `cannot join room ${name}: ${NO_ROOMS}`));
      }, timeout);
      room._answered = (error) => {
        clearTimeout(timer);
        if (error) {
          this.rooms.delete(name);
          reject(error);
        } else {
          resolve(room);
        }
      };
      room._sendJoin();
    });
  }

  send(message) {
    this.peer.socket.send(message);
  }

  frame(message) {
    if (!message || typeof message.type !== "string" || !message.type.startsWith("ROOM-")) return;
    const payload = message.payload || {};
    const room = this.rooms.get(payload.room);
    if (!room) return;
    switch (message.type) {
      case "ROOM-MEMBERS":
        room._snapshot(payload.members || {});
        if ("sfu" in payload) room._useSfu(payload.sfu, "");
        break;
      case "ROOM-SFU":
        room._useSfu(payload.sfu ?? null, payload.msg || "");
        break;
      case "ROOM-ERROR": {
        const error = new RoomError(payload.type, `cannot join room ${room.name}: ${payload.msg}`);
        if (room._answered) room._answered(error);
        room._answered = null;
        break;
      }
      case "ROOM-JOIN":
        if (message.src) room._joined(message.src, payload.metadata ?? null);
        break;
      case "ROOM-LEAVE":
        if (message.src) room._left(message.src);
        break;
    }
  }

  incoming(conn) {
    if (!isRoomConnection(conn)) return;
    const room = this.rooms.get(conn.metadata[ROOM_KEY]);
    if (!room || !room.joined) {
      conn.close();
      return;
    }
    room._incoming(conn);
  }
}

class Room {
  constructor(hub, name, metadata) {
    this.name = name;
    this.metadata = metadata;
    this.members = new Map(); // id -> metadata
    this.joined = false;
    this._hub = hub;
    this._links = new Map(); // id -> DataConnection
    this._waiters = new Map(); // id -> [resolve]
    this._handlers = { join: [], leave: [], data: [], stream: [] };
    this._stream = null; // our media, once call() was called
    this._calls = new Map(); // id -> [MediaConnection]
    this._sfu = null; // SfuMedia, when the broker says the media goes through Janus
    this._answered = null;
    this._early = []; // [id, data] from connections that outran their member's ROOM-JOIN
    this._gone = false;
  }

  on(event, handler) {
    if (!(event in this._handlers)) throw new Error(`unknown room event ${event}`);
    this._handlers[event].push(handler);
    return this;
  }

  off(event, handler) {
    const list = this._handlers[event] || [];
    const at = list.indexOf(handler);
    if (at >= 0) list.splice(at, 1);
    return this;
  }

  _emit(event, ...args) {
    for (const handler of [...this._handlers[event]]) {
      try {
        handler(...args);
      } catch (err) {
        console.error(`room ${this.name}: ${event} handler failed`, err);
      }
    }
  }

  /** Send `data` to every other member, or to `to` (an id or a list); waits for connections. */
  async send(data, { to = null, timeout = 30000 } = {}) {
    if (!this.joined) throw new Error(`not in room ${this.name}`);
    const targets = to === null ? [...this.members.keys()] : [].concat(to);
    const late = [];
    await Promise.all(
      targets.map(async (id) => {
        if (!this.members.has(id)) throw new Error(`${id} is not a member of room ${this.name}`);
        const conn = await this._open(id, timeout);
        if (conn) conn.send(data);
        else if (this.members.has(id)) late.push(id);
      }),
    );
    if (late.length) throw new Error(`room ${this.name}: no connection to ${late.join(", ")}`);
  }

  /** Send our MediaStream to every member, now and later; theirs come as "stream" events. */
  async call(stream) {
    this._stream = stream;
    if (this._sfu) return this._sfu.call(stream);
    for (const id of this.members.keys()) this._call(id);
  }

  /** Leave the room and close its connections. */
  leave() {
    if (this._gone) return;
    this._gone = true;
    this.joined = false;
    this._hub.rooms.delete(this.name);
    this._hub.send({ type: "ROOM-LEAVE", payload: { room: this.name } });
    for (const id of [...this.members.keys()]) this._drop(id);
    this.members.clear();
    if (this._sfu) this._sfu.close();
  }

  _useSfu(info, why) {
    if (!this._sfu) {
      const peer = this._hub.peer;
      this._sfu = new SfuMedia(peer.id, peer.options.config, (id, stream) => {
        if (this.members.has(id)) this._emit("stream", id, stream);
      });
      for (const calls of this._calls.values()) for (const call of calls) call.close();
      this._calls.clear();
    }
    this._sfu.use(info, why);
  }

  _sendJoin() {
    this._hub.send({ type: "ROOM-JOIN", payload: { room: this.name, metadata: this.metadata } });
  }

  _snapshot(members) {
    const me = this._hub.peer.id;
    for (const id of [...this.members.keys()]) if (!(id in members)) this._left(id);
    this.joined = true;
    if (this._answered) this._answered(null);
    this._answered = null;
    for (const [id, metadata] of Object.entries(members)) if (id !== me) this._joined(id, metadata);
  }

  _joined(id, metadata) {
    if (!this.joined || id === this._hub.peer.id) return;
    const known = this.members.has(id);
    const same = known && JSON.stringify(this.members.get(id)) === JSON.stringify(metadata);
    this.members.set(id, metadata);
    if (!known) {
      if (this._hub.peer.id < id && !this._links.has(id)) this._dial(id);
      if (this._stream && !this._sfu) this._call(id);
    }
    if (!same) this._emit("join", id, metadata);
    if (!known && this._early.some(([from]) => from === id)) {
      const early = this._early.filter(([from]) => from === id);
      this._early = this._early.filter(([from]) => from !== id);
      for (const [from, data] of early) this._emit("data", from, data);
    }
  }

  _left(id) {
    if (!this.members.delete(id)) return;
    this._drop(id);
    this._emit("leave", id);
  }

  _drop(id) {
    this._early = this._early.filter(([from]) => from !== id);
    const conn = this._links.get(id);
    this._links.delete(id);
    if (conn) conn.close();
    for (const call of this._calls.get(id) || []) call.close();
    this._calls.delete(id);
    if (this._sfu) this._sfu.drop(id);
    this._wake(id);
  }

  _wake(id) {
    for (const resolve of this._waiters.get(id) || []) resolve();
    this._waiters.delete(id);
  }

  async _open(id, timeout) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const conn = this._links.get(id);
      if (conn && conn.open) return conn;
      if (!this.members.has(id) || Date.now() >= deadline) return null;
      await new Promise((resolve) => {
        const list = this._waiters.get(id) || [];
        list.push(resolve);
        this._waiters.set(id, list);
        setTimeout(resolve, Math.max(0, deadline - Date.now()));
      });
    }
  }

  _dial(id) {
    const conn = this._hub.peer.connect(id, {
      label: `peerpy-room:${this.name}`,
      metadata: { [ROOM_KEY]: this.name },
      serialization: "binary",
      reliable: true,
    });
    this._attach(id, conn);
    const retry = () => {
      // Not open, still a member, still the link: try again a little later.
      if (this._links.get(id) === conn && !conn.open && this.members.has(id)) {
        this._links.delete(id);
        setTimeout(() => this.members.has(id) && !this._links.has(id) && this._dial(id), 1000);
      }
    };
    conn.on("error", retry);
  }

  _incoming(conn) {
    const id = conn.peer;
    if (conn.type === "media") {
      this._answerCall(conn);
      return;
    }
    const current = this._links.get(id);
    if (current && current.open && this._hub.peer.id < id) {
      conn.close(); // both opened one: ours, from the smaller id, is kept
      return;
    }
    this._attach(id, conn);
    if (!this.members.has(id)) {
      // Its OFFER outran the broker's ROOM-JOIN: give the notice 10 s.
      setTimeout(() => this.members.has(id) || this._links.get(id) !== conn || this._drop(id), 10000);
    }
  }

  _attach(id, conn) {
    const old = this._links.get(id);
    this._links.set(id, conn);
    if (old && old !== conn) old.close();
    conn.on("open", () => this._wake(id));
    conn.on("data", (data) => {
      if (this.members.has(id)) this._emit("data", id, data);
      else this._early.push([id, data]); // delivered once the broker says it is a member
    });
    conn.on("close", () => {
      // The one connection with this member died: it is gone, for us.
      if (this._links.get(id) === conn && this.joined) this._left(id);
    });
    if (conn.open) this._wake(id);
  }

  _call(id) {
    const call = this._hub.peer.call(id, this._stream, { metadata: { [ROOM_KEY]: this.name } });
    const calls = this._calls.get(id) || [];
    calls.push(call);
    this._calls.set(id, calls);
  }

  _answerCall(call) {
    if (this._sfu) {
      call.close(); // a mesh call in an SFU room: refused, as the Python SDK does
      return;
    }
    const calls = this._calls.get(call.peer) || [];
    calls.push(call);
    this._calls.set(call.peer, calls);
    call.on("stream", (stream) => {
      if (this.members.has(call.peer)) this._emit("stream", call.peer, stream);
    });
    call.answer(); // receive only: each member sends its own media in its own call
  }
}
