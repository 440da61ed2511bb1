// The SvelteKit option's server: the adapter-node handler on a Node HTTP server, plus a
// WebSocket endpoint at /ws (the `ws` package), because SvelteKit has no WebSocket
// support of its own (sveltejs/kit#1491). Speaks the protocol of harness/load/protocol.py.
//
// Run: `npm ci && npx vite build && node server.js --port 3000` (or PORT=3000); prints `READY port=N`.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';
import { handler } from './build/handler.js';

const { values: args } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' } } });
const port = Number(args.port ?? process.env.PORT ?? 3000);

/** Room name -> its members; a room disappears with its last member. */
const rooms = new Map();
// 1 MiB per message, as the Python servers' websockets default: a 10 MB frame is closed with 1009, not parsed.
const wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 20 });

wss.on('connection', (ws) => {
  const joined = new Set();
  ws.on('error', (err) => console.error('websocket error:', err.message)); // without a listener an error would crash the server
  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.send(data, { binary: true });
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return ws.close(1007, 'expected a JSON object with an op');
    }
    if ((msg?.op === 'join' || msg?.op === 'broadcast') && typeof msg.room !== 'string') {
      ws.send(JSON.stringify({ op: 'error', reason: 'room must be a string' }));
    } else if (msg?.op === 'echo') {
      ws.send(data, { binary: false }); // the frame as received: unchanged, and no re-encoding
    } else if (msg?.op === 'join') {
      if (!rooms.has(msg.room)) rooms.set(msg.room, new Set());
      rooms.get(msg.room).add(ws);
      joined.add(msg.room);
      ws.send(JSON.stringify({ op: 'joined', room: msg.room }));
    } else if (msg?.op === 'broadcast') {
      for (const peer of rooms.get(msg.room) ?? []) peer.send(data, { binary: false });
    } else {
      ws.send(JSON.stringify({ op: 'error', reason: 'expected a JSON object with a known op' }));
    }
  });
  ws.on('close', () => {
    for (const room of joined) {
      const members = rooms.get(room);
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    }
  });
});

const server = http.createServer(handler);
server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://localhost').pathname !== '/ws') return socket.destroy();
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
server.listen(port, args.host, () => console.log(`READY port=${server.address().port}`));

// The memory scenario's heap reading: with `node --expose-gc`, SIGUSR2 runs a full garbage collection and prints V8's live heap.
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') global.gc();
  const m = process.memoryUsage();
  console.log(`HEAP used=${m.heapUsed} total=${m.heapTotal} rss=${m.rss} gc=${typeof global.gc === 'function'}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    for (const ws of wss.clients) ws.close(1001); // going away
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref(); // a peer that never answers the close must not hold the exit
  });
}
