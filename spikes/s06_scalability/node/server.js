// Spike 6's Node server: Spike 1's SvelteKit option (the adapter-node handler on a Node HTTP server, and a `ws`
// WebSocketServer on that server's upgrade event, since SvelteKit has no WebSocket support of its own:
// sveltejs/kit#1491), plus Redis fan-out and PostgreSQL persistence, as ../poc/native_server.py does for Python.
//
// Run, from the built app's directory (it holds build/ and node_modules/):
//   node server.js --port 8000 --pg DSN [--redis URL] [--server-id N]
// It prints `READY port=N` once it accepts connections. WebSocket clients connect to /ws; every other request goes
// to SvelteKit (GET /health answers "ok"). SvelteKit serves no WebSocket byte: the frames go from the HTTP server's
// socket straight to `ws`, so the framework's part in the measurement is its memory and its start-up.
//
// The protocol is harness/load/protocol.py, answered exactly as native_server.py answers it: an echo comes back as
// the frame received, unchanged; a join is answered {"op":"joined","room":...}; a broadcast goes, unchanged, to every
// member of the room, the sender included; a binary frame is echoed. Every echo and broadcast is a chat message,
// persisted (persist.js; an echo's room is "echo"). A join or broadcast whose room is not a string, and an unknown
// op, get {"op":"error",...}; a frame that is not a JSON object with an op (or a join or broadcast without a room)
// closes the connection with 1007. Frames of one connection are handled in order, a join's subscription included.
//
// Without --redis a broadcast is delivered to the room's members in this process. With --redis each room is a Redis
// channel (room:<name>): a broadcast is PUBLISHed, and every process subscribed to the channel (those with a member
// in the room) delivers it to its own members, the sender's process included, so a message takes the same path
// whichever process the members are on. The client is node-redis (@redis/client, the package `redis` re-exports):
// one connection publishes (commands pipelined in order), a duplicate subscribes, receiving messages as Buffers
// that are sent on as they came, with no decoding.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createClient } from '@redis/client';
import { WebSocket, WebSocketServer } from 'ws';
import { handler } from './build/handler.js';
import { ChatStore } from './persist.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8000' },
    pg: { type: 'string', default: '' }, // PostgreSQL DSN; empty: persist nothing
    redis: { type: 'string', default: '' }, // Redis URL for cross-process fan-out; empty: one process
    'server-id': { type: 'string', default: '0' },
  },
});

const PREFIX = 'room:';
const WS_PATH = '/ws';
// 1 MiB per message, as the Python servers' websockets default: a bigger frame is closed with 1009, not parsed.
const MAX_PAYLOAD = 1 << 20;
const TEXT = { binary: false };
const BINARY = { binary: true };
const ERROR_ROOM = JSON.stringify({ op: 'error', reason: 'room must be a string' });
const ERROR_OP = JSON.stringify({ op: 'error', reason: 'unknown op' });

/** Send `data` as a text frame to every open member (a member whose connection is closing is skipped). */
function deliver(members, data) {
  for (const peer of members) {
    if (peer.readyState === WebSocket.OPEN) peer.send(data, TEXT);
  }
}

/** Rooms of connections, optionally spread over processes through Redis channels. */
class Rooms {
  constructor() {
    this.rooms = new Map(); // name -> { members: Set<WebSocket>, ready: Promise | null, listener }
    this.pub = null;
    this.sub = null;
    this.redisErrors = 0;
  }

  async start(redisUrl) {
    if (!redisUrl) return;
    this.pub = createClient({ url: redisUrl });
    this.sub = this.pub.duplicate(); // a subscribed connection runs no other command
    for (const client of [this.pub, this.sub]) {
      // node-redis reconnects by itself and queues commands meanwhile; an unhandled 'error' would end the process.
      client.on('error', (err) => {
        this.redisErrors += 1;
        if (this.redisErrors <= 5) console.error(`redis: ${err.message}`);
      });
    }
    await Promise.all([this.pub.connect(), this.sub.connect()]);
  }

  /** Add `ws` to `name`; a promise when the room is new here and its channel's subscription is still on its way. */
  join(ws, name) {
    let room = this.rooms.get(name);
    if (room === undefined) {
      const members = new Set();
      room = { members, ready: null, listener: (message) => deliver(members, message) };
      this.rooms.set(name, room);
      if (this.sub !== null) {
        room.ready = this.sub
          .subscribe(PREFIX + name, room.listener, true) // true: messages as Buffers
          .finally(() => {
            room.ready = null;
          });
      }
    }
    room.members.add(ws);
    return room.ready;
  }

  leave(ws, name) {
    const room = this.rooms.get(name);
    if (room === undefined) return;
    room.members.delete(ws);
    if (room.members.size === 0) {
      this.rooms.delete(name);
      // With its listener: node-redis then marks the channel as unsubscribing, so a join that comes before the reply
      // subscribes again instead of taking the channel for subscribed and losing its listener with the reply.
      this.sub
        ?.unsubscribe(PREFIX + name, room.listener, true)
        .catch((err) => console.error(`redis: unsubscribe ${name}: ${err.message}`));
    }
  }

  broadcast(name, data) {
    if (this.pub !== null) {
      this.pub.publish(PREFIX + name, data).catch((err) => console.error(`redis: publish: ${err.message}`));
    } else {
      const room = this.rooms.get(name);
      if (room !== undefined) deliver(room.members, data);
    }
  }

  async close() {
    // close() (node-redis 5) lets the replies in flight arrive, then closes the connection.
    await Promise.allSettled([this.pub, this.sub].filter((c) => c !== null).map((c) => c.close()));
  }
}

const store = args.pg ? new ChatStore(args.pg, Number(args['server-id'])) : null;
const rooms = new Rooms();

/** Handle one frame of `conn`; a promise when the connection must wait for it before its next frame (a join's subscription). */
function handle(ws, conn, data, isBinary) {
  if (ws.readyState !== WebSocket.OPEN) return null; // closing (a 1007 sent): what follows is not served, as in Python
  if (isBinary) {
    ws.send(data, BINARY);
    return null;
  }
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    msg = undefined; // not JSON (invalid UTF-8 never gets here: ws closes such a frame with 1007 itself)
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || !Object.hasOwn(msg, 'op')) {
    ws.close(1007, 'expected a JSON object with an op');
    return null;
  }
  const op = msg.op;
  if (op === 'join' || op === 'broadcast') {
    if (!Object.hasOwn(msg, 'room')) {
      ws.close(1007, 'expected a JSON object with an op');
      return null;
    }
    if (typeof msg.room !== 'string') {
      ws.send(ERROR_ROOM);
      return null;
    }
  }
  if (op === 'echo') {
    store?.add('echo', msg);
    ws.send(data, TEXT); // the frame as received: unchanged, and not re-encoded
  } else if (op === 'join') {
    if (conn.closed) return null; // a join queued behind another, on a connection closed meanwhile
    const room = msg.room;
    conn.joined.add(room);
    const reply = JSON.stringify({ op: 'joined', room });
    const ready = rooms.join(ws, room);
    if (ready === null) {
      ws.send(reply);
      return null;
    }
    return ready.then(
      () => ws.send(reply),
      (err) => ws.send(JSON.stringify({ op: 'error', reason: `join failed: ${err.message}` })),
    );
  } else if (op === 'broadcast') {
    store?.add(msg.room, msg);
    rooms.broadcast(msg.room, data);
  } else {
    ws.send(ERROR_OP);
  }
  return null;
}

/** Handle the frames that arrived while `pending` ran, in order, then go back to handling frames as they come. */
async function drain(ws, conn, pending) {
  await pending;
  while (conn.queue.length > 0) {
    const [data, isBinary] = conn.queue.shift();
    const next = handle(ws, conn, data, isBinary);
    if (next !== null) await next;
  }
  conn.queue = null;
}

const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_PAYLOAD });
wss.on('connection', (ws) => {
  const conn = { joined: new Set(), queue: null, closed: false };
  ws.on('error', (err) => console.error(`websocket: ${err.message}`)); // unhandled, an error would end the process
  ws.on('message', (data, isBinary) => {
    if (conn.queue !== null) {
      conn.queue.push([data, isBinary]);
      return;
    }
    const pending = handle(ws, conn, data, isBinary);
    if (pending !== null) {
      conn.queue = [];
      drain(ws, conn, pending).catch((err) => console.error(`websocket: ${err.stack ?? err}`));
    }
  });
  ws.on('close', () => {
    conn.closed = true;
    for (const room of conn.joined) rooms.leave(ws, room);
    conn.joined.clear();
  });
});

const server = http.createServer(handler);
server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://localhost').pathname !== WS_PATH) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

let stopping = false;
/** SIGTERM or SIGINT: stop accepting, close every connection (1001), write the buffered rows, exit. */
async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  for (const ws of wss.clients) ws.close(1001, 'server shutting down');
  const deadline = Date.now() + 3000;
  while (wss.clients.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  for (const ws of wss.clients) ws.terminate(); // a peer that never answers the close must not hold the exit
  await rooms.close();
  await store?.close();
  process.exit(0);
}
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => void shutdown());

await store?.start();
await rooms.start(args.redis);
server.listen({ host: args.host, port: Number(args.port), backlog: 4096 }, () => {
  console.log(`READY port=${server.address().port}`);
});
