// Spike 7's off-the-shelf anchor: Node socket.io 4.8 with connection state recovery and @socket.io/redis-streams-adapter.
//
// The load engine's Socket.IO protocol (harness/load/protocol.py): clients emit `echo`, `join` and `broadcast` with one
// object; the server emits `echo` back to the sender, `joined` ({room}) to the joiner and `broadcast` to every member of
// the room, the sender included. No acknowledgements: the load engine's clients ask for none. Anything else gets an
// `error` event ({error: "..."}). The server keeps no room state of its own (no numbering, no replay of its own): what
// a reconnecting client gets back is socket.io's connection state recovery alone, which is what this option measures.
//
// Connection state recovery (socket.io 4.6+): the CONNECT reply names a private session id (`pid`), and every packet the
// server sends carries its offset (the Redis stream entry id) as its last argument. When a socket drops for a reason
// socket.io deems recoverable (transport close or error, ping timeout, server shutting down), the adapter stores the
// session (sid, rooms, data) in Redis (`sio:session:<pid>`, expiring after maxDisconnectionDuration). A client that
// reconnects within that time with {pid, offset} in its CONNECT packet gets its sid and rooms back and every packet
// of its rooms written to the stream after its offset. With the redis-streams adapter every packet the server sends
// (a direct emit too) is an entry of one Redis stream (`socket.io-0`, trimmed to about --stream-max-len entries),
// and the session is a Redis key, so a server started again can restore a session that the old one persisted. A
// session is persisted only when the old server saw the socket close: a SIGKILL persists nothing (the client gets a
// new session and nothing is replayed); SIGTERM here closes socket.io first (reason "server shutting down", which is
// recoverable), waits for Redis to take the sessions, then exits.
//
// Integers beyond 2^53 (the protocol's `t`, nanoseconds) come back rounded to the nearest double, as in any Node app:
// the load engine identifies messages by (c, seq), so only latencies move, by less than a microsecond.
//
// Run: `npm ci --ignore-scripts && node server.js --port 3000 --redis redis://127.0.0.1:6379/0 --ping-interval 2
// --ping-timeout 5` (seconds); prints `READY port=N`
// once Redis answers and the port accepts (port 0: the kernel picks one).
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379/0' },
    // seconds, as the Python POC's --ping-interval and --ping-timeout (the scenarios give both the same values)
    'ping-interval': { type: 'string', default: '2' },
    'ping-timeout': { type: 'string', default: '5' },
    'max-disconnection': { type: 'string', default: '120000' }, // ms a session is kept for recovery
    'stream-max-len': { type: 'string', default: '10000' }, // the adapter's default; ~ trimming
  },
});
const num = (name) => {
  const v = Number(args[name]);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`--${name} must be a number >= 0, not ${JSON.stringify(args[name])}`);
    process.exit(2);
  }
  return v;
};
const port = num('port');
const pingInterval = Math.round(num('ping-interval') * 1000); // socket.io takes ms
const pingTimeout = Math.round(num('ping-timeout') * 1000);
const maxDisconnectionDuration = num('max-disconnection');
const maxLen = num('stream-max-len');

// This process's counts since it started (a restarted server starts from zero): sockets connected, of those restored
// by connection state recovery, broadcasts received from room members (each sent on to the room), and times Redis
// went away. GET /stats answers them as JSON (the scenarios' "state" of this option; no room state to compare).
const counts = { connections: 0, recovered: 0, broadcasts: 0, redis_errors: 0 };

if (!/^rediss?:\/\//.test(args.redis)) {
  console.error(`--redis must be a redis:// URL (the anchor keeps its stream and sessions in Redis), not ${JSON.stringify(args.redis)}`);
  process.exit(2);
}
const redis = createClient({ url: args.redis });
let redisDown = false;
redis.on('error', (err) => {
  // node-redis reconnects by itself and queues commands meanwhile; an unhandled 'error' would end the process.
  if (!redisDown) {
    console.log(`REDIS error: ${err.message}`);
    counts.redis_errors += 1;
  }
  redisDown = true;
});
redis.on('ready', () => {
  if (redisDown) console.log('REDIS ready again');
  redisDown = false;
});
await redis.connect();

const httpServer = http.createServer((req, res) => {
  if (req.url === '/health') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  else if (req.url === '/stats') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts));
  else res.writeHead(404).end();
});

const io = new Server(httpServer, {
  pingInterval,
  pingTimeout,
  connectionStateRecovery: { maxDisconnectionDuration, skipMiddlewares: true },
  adapter: createAdapter(redis, { maxLen }),
});

const EVENTS = new Set(['echo', 'join', 'broadcast']);
const isRoom = (data) => data !== null && typeof data === 'object' && typeof data.room === 'string' && data.room !== '';
const error = (socket, text) => socket.emit('error', { error: text });

io.on('connection', (socket) => {
  counts.connections += 1;
  if (socket.recovered) counts.recovered += 1;
  socket.onAny((event) => {
    if (!EVENTS.has(event)) error(socket, `unknown event ${JSON.stringify(String(event).slice(0, 50))}`);
  });
  socket.on('echo', (data) => socket.emit('echo', data));
  // socket.join is idempotent: a recovered socket is already in its rooms, and its rejoin is answered all the same.
  socket.on('join', (data) => {
    if (!isRoom(data)) return error(socket, 'join expects {"room": <a string>}');
    socket.join(data.room);
    socket.emit('joined', { room: data.room });
  });
  socket.on('broadcast', (data) => {
    if (!isRoom(data)) return error(socket, 'broadcast expects {"room": <a string>, ...}');
    if (!socket.rooms.has(data.room)) return error(socket, `not a member of ${JSON.stringify(data.room)}`);
    counts.broadcasts += 1;
    io.to(data.room).emit('broadcast', data);
  });
});

let closing = false;
async function shutdown(signal) {
  if (closing) return;
  closing = true;
  // io.close() ends every socket with "server shutting down" (recoverable: the adapter persists each session), then
  // closes engine.io and the HTTP server; redis.close() waits for the queued SETs before closing the connection.
  // A connection that will not close holds httpServer.close(): give up after 3 s (the harness's grace is 5 s).
  const late = new Promise((resolve) => setTimeout(resolve, 3000).unref());
  await Promise.race([io.close(), late]);
  await Promise.race([redis.close().catch(() => {}), late]);
  console.log(`STOPPED signal=${signal} connections=${counts.connections} recovered=${counts.recovered} broadcasts=${counts.broadcasts}`);
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

httpServer.listen(port, args.host, () => {
  console.log(`READY port=${httpServer.address().port} socket.io=4.8 recovery=${maxDisconnectionDuration}ms`);
});
