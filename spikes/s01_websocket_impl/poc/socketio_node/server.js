// The Socket.IO option on Node: socket.io 4.8, Socket.IO's reference server, on a plain Node HTTP server.
// Same events as the python-socketio POC (poc/socketio/server.py) and the protocol of harness/load/protocol.py:
// clients emit `echo`, `join` and `broadcast` with one object; the server emits `echo`, `joined` and `broadcast` back.
// Anything else gets an `error` event ({error: "..."}), as from the Python server: an unknown event, a `join` or
// `broadcast` without a string room, a packet socket.io cannot decode; an event on a namespace the client did not connect
// gets a connect error (`44`), a frame that is no Engine.IO packet close 1008 and a frame over 1 MB close 1009. As shipped,
// socket.io closed the connection without a status code for most of these and ignored an unknown event (the
// hostile-frame battery, harness/frames.py).
//
// Run: `npm ci --ignore-scripts && node --expose-gc server.js --port 3000` (port 0: the kernel picks one);
// prints `READY port=N`. SIGUSR2 (with --expose-gc) runs a full garbage collection and prints
// `HEAP used=<bytes> total=<bytes> rss=<bytes>`: V8's live heap, which the memory scenario reads beside RSS.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import parser, { REFUSED } from './parser.js';
import { PacketType } from 'socket.io-parser';

const { values: args } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' } } });
const port = Number(args.port ?? process.env.PORT ?? 3000);

/** Allow browser pages served from any loopback port (the test pages live on other ports), as the Python server does. */
function loopbackOrigin(origin, callback) {
  let host = null;
  try {
    host = origin ? new URL(origin).hostname : null;
  } catch {
    host = null;
  }
  callback(null, host === '127.0.0.1' || host === 'localhost');
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else {
    res.writeHead(404).end();
  }
});
// socket.io's defaults are python-socketio's: 1 MB per message (maxHttpBufferSize), ping every 25 s, 20 s to answer.
// The parser is socket.io's own, keeping integers beyond 2^53 exact (parser.js): the protocol's `t` has 19 digits.
const io = new Server(server, { cors: { origin: loopbackOrigin }, parser });

// A frame Engine.IO cannot read as a packet (an unknown packet type, an empty frame): engine.io closes the session without a
// status code, so close the WebSocket first, with 1008. (A session that began on long-polling and upgraded keeps
// engine.io's close: its WebSocket is not in reach.)
io.engine.on('connection', (conn) => {
  conn.on('packet', ({ type }) => {
    if (type === 'error') conn.request.websocket?.close(1008, 'not an Engine.IO packet');
  });
});

const EVENTS = new Set(['echo', 'join', 'broadcast']);
const isRoom = (data) => data !== null && typeof data === 'object' && typeof data.room === 'string' && data.room !== '';
const error = (socket, text) => socket.emit('error', { error: text });

io.on('connection', (socket) => {
  // A packet the parser refused (parser.js): one it cannot decode gets an error event, an event on a namespace this client
  // never connected a connect error for that namespace.
  socket.on(REFUSED, (reason, nsp) => {
    if (nsp === undefined) return error(socket, `bad Socket.IO packet: ${reason}`);
    const refusal = { type: PacketType.CONNECT_ERROR, nsp, data: { message: reason } };
    for (const frame of io.encoder.encode(refusal)) socket.conn.write(frame);
  });
  socket.onAny((event) => {
    if (typeof event !== 'symbol' && !EVENTS.has(event)) error(socket, `unknown event ${JSON.stringify(String(event).slice(0, 50))}`);
  });
  // Send `data` back; a client that asked for an acknowledgement also gets it as the answer.
  socket.on('echo', (data, ack) => {
    socket.emit('echo', data);
    if (typeof ack === 'function') ack(data);
  });
  // Put the sender in data.room; socket.io forgets rooms on disconnect by itself.
  socket.on('join', (data) => {
    if (!isRoom(data)) return error(socket, 'join expects {"room": <a string>}');
    socket.join(data.room);
    socket.emit('joined', { room: data.room });
  });
  // Deliver data to every member of its room, the sender included.
  socket.on('broadcast', (data) => {
    if (!isRoom(data)) return error(socket, 'broadcast expects {"room": <a string>, ...}');
    io.to(data.room).emit('broadcast', data);
  });
});

server.listen(port, args.host, () => console.log(`READY port=${server.address().port}`));

process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc();
  const m = process.memoryUsage();
  console.log(`HEAP used=${m.heapUsed} total=${m.heapTotal} rss=${m.rss} gc=${typeof global.gc === 'function'}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    io.close(() => process.exit(0)); // disconnects every client properly, then closes the HTTP server
    setTimeout(() => process.exit(0), 1000).unref(); // a pending long-poll must not hold the exit
  });
}
