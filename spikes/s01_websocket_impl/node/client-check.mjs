// Talk to a POC server with an official client nobody here wrote: `ws` or `socket.io-client`.
//
//   node client-check.mjs URL ws|socketio|socketio-polling [--timeout SECONDS]
//
// Two connections: an echo on the first, both join a room, the first
// broadcasts, both must receive it. Prints one JSON object: ok, the client
// and its version, echo and broadcast latency in ms, and the errors seen.
// Exits 0 when ok, 1 otherwise.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { io } from 'socket.io-client';

const require = createRequire(import.meta.url);
const { values: opts, positionals } = parseArgs({ allowPositionals: true, options: { timeout: { type: 'string', default: '10' } } });
const [url, transport] = positionals;
const ROOM = 'client-check';

/** A connection with the same small surface for both clients: send(msg), next(op) -> Promise<msg>, close(). */
function inbox() {
  const waiting = [];
  const received = [];
  return {
    push(msg) {
      const i = waiting.findIndex((w) => w.op === msg.op);
      if (i >= 0) waiting.splice(i, 1)[0].resolve(msg);
      else received.push(msg);
    },
    next(op) {
      const i = received.findIndex((m) => m.op === op);
      if (i >= 0) return Promise.resolve(received.splice(i, 1)[0]);
      return new Promise((resolve) => waiting.push({ op, resolve }));
    },
  };
}

function openWs() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const box = inbox();
    ws.on('message', (data, isBinary) => !isBinary && box.push(JSON.parse(data)));
    ws.once('error', reject);
    ws.once('open', () =>
      resolve({ send: (msg) => ws.send(JSON.stringify(msg)), next: box.next, close: () => ws.close() }),
    );
  });
}

function openSocketIo(transports) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports, reconnection: false, forceNew: true });
    const box = inbox();
    socket.onAny((op, data) => box.push({ ...data, op }));
    socket.once('connect_error', reject);
    socket.once('connect', () =>
      resolve({
        send: ({ op, ...data }) => socket.emit(op, data),
        next: box.next,
        close: () => socket.close(),
      }),
    );
  });
}

const clients = {
  ws: { open: openWs, package: 'ws' },
  socketio: { open: () => openSocketIo(['websocket']), package: 'socket.io-client' },
  'socketio-polling': { open: () => openSocketIo(['polling']), package: 'socket.io-client' },
};

async function check(client, result) {
  const a = await client.open();
  const b = await client.open();
  try {
    let t0 = performance.now();
    a.send({ op: 'echo', seq: 0, t: Date.now(), c: 0, d: 'ping' });
    const echo = await a.next('echo');
    result.echo_ms = performance.now() - t0;
    if (echo.seq !== 0 || echo.d !== 'ping') result.errors.push(`echo came back changed: ${JSON.stringify(echo)}`);

    a.send({ op: 'join', room: ROOM });
    b.send({ op: 'join', room: ROOM });
    await Promise.all([a.next('joined'), b.next('joined')]);
    t0 = performance.now();
    a.send({ op: 'broadcast', room: ROOM, seq: 1, t: Date.now(), c: 0, d: 'roll' });
    const got = await Promise.all([a.next('broadcast'), b.next('broadcast')]);
    result.broadcast_ms = performance.now() - t0;
    if (got.some((m) => m.seq !== 1 || m.d !== 'roll')) result.errors.push(`broadcast came back changed: ${JSON.stringify(got)}`);
  } finally {
    a.close();
    b.close();
  }
}

const client = clients[transport];
if (!url || !client) {
  console.error(`usage: node client-check.mjs URL ${Object.keys(clients).join('|')} [--timeout SECONDS]`);
  process.exit(2);
}
const result = {
  ok: false,
  url,
  transport,
  client: `${client.package}@${require(`${client.package}/package.json`).version}`,
  echo_ms: null,
  broadcast_ms: null,
  errors: [],
};
const timeout = new Promise((_, reject) => {
  setTimeout(() => reject(new Error(`no answer within ${opts.timeout} s`)), Number(opts.timeout) * 1000).unref();
});
try {
  await Promise.race([check(client, result), timeout]);
} catch (err) {
  result.errors.push(String(err?.message ?? err));
}
result.ok = result.errors.length === 0;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
