// Spike 9's browser benchmark: decode and encode one option's wire bytes in the page, as the tabletop's client would.
//
// The harness prepends `const DESCRIPTOR = {...};` (tabletop.proto as protobufjs JSON) and bundles this
// file with esbuild. The page calls `run(config)`: it fetches the stream the Python side encoded
// (/stream.bin: uint32 little-endian length, then the bytes, per message) and the same messages as
// app-level objects (/reference.json), checks every message round-trips, then times decode and encode
// with performance.now() over calibrated loops, per message kind and over the whole mixed stream.
import { Decoder, Encoder } from '@msgpack/msgpack';
import protobuf from 'protobufjs/light.js';

/* global DESCRIPTOR */

// Each codec: how a frame arrives (`wire`), the object the app holds before sending (`toNative`, not
// timed), `encode` from that object, and `decode` from the frame to the app's plain object, every field read.
function jsonCodec() {
  return {
    library: 'JSON.parse / JSON.stringify',
    text: true, // a text frame: the browser hands onmessage a string, already decoded from UTF-8
    toNative: (msg) => msg,
    encode: (native) => JSON.stringify(native), // WebSocket.send(string) writes the UTF-8 itself
    decode: (frame) => JSON.parse(frame),
  };
}

function msgpackCodec(config) {
  const { fields, typeIds } = config;
  const names = Object.fromEntries(Object.entries(typeIds).map(([k, v]) => [v, k]));
  const encoder = new Encoder();
  const decoder = new Decoder();
  const values = (obj, order) => order.map((f) => (f === 'tokens' ? obj[f].map((t) => values(t, fields.token)) : obj[f]));
  const fromRow = (row) => {
    const type = names[row[0]];
    const order = fields[type];
    const msg = { type };
    for (let i = 0; i < order.length; i++) msg[order[i]] = row[i + 1];
    if (type === 'snapshot') {
      msg.tokens = msg.tokens.map((t) => {
        const token = {};
        for (let i = 0; i < fields.token.length; i++) token[fields.token[i]] = t[i];
        return token;
      });
    }
    return msg;
  };
  return {
    library: '@msgpack/msgpack',
    text: false,
    toNative: (msg) => [typeIds[msg.type], ...values(msg, fields[msg.type])], // the seed's [1, 100, 200, "user123"]
    encode: (native) => encoder.encode(native),
    decode: (frame) => fromRow(decoder.decode(frame)),
  };
}

function protobufCodec(config) {
  const { fields, typeIds } = config;
  const Envelope = protobuf.Root.fromJSON(DESCRIPTOR).lookupType('realtime_spikes.tabletop.Envelope');
  // The oneof's field of each kind (token_move -> tokenMove: protobufjs names fields in camelCase, as the app's keys).
  const caseOf = Object.fromEntries(Object.entries(typeIds).map(([k, id]) => [k, Envelope.fieldsById[id].name]));
  const kindOf = Object.fromEntries(Object.entries(caseOf).map(([k, c]) => [c, k]));
  // int64 arrives as a Long (protobufjs bundles long.js); the app's timestamp is a number.
  const scalar = (v) => (v !== null && typeof v === 'object' && typeof v.toNumber === 'function' ? v.toNumber() : v);
  const plain = (body, order) => {
    const out = {};
    for (let i = 0; i < order.length; i++) out[order[i]] = scalar(body[order[i]]);
    return out;
  };
  return {
    library: 'protobufjs',
    text: false,
    toNative: (msg) => {
      const body = { ...msg };
      delete body.type;
      return Envelope.fromObject({ [caseOf[msg.type]]: body });
    },
    encode: (native) => Envelope.encode(native).finish(),
    decode: (frame) => {
      const env = Envelope.decode(frame);
      const type = kindOf[env.msg];
      const msg = { type, ...plain(env[env.msg], fields[type]) };
      if (type === 'snapshot') msg.tokens = msg.tokens.map((t) => plain(t, fields.token));
      return msg;
    },
  };
}

const CODECS = { json: jsonCodec, msgpack: msgpackCodec, protobuf: protobufCodec };

function split(buffer) {
  const view = new DataView(buffer);
  const out = [];
  for (let at = 0; at < buffer.byteLength; ) {
    const n = view.getUint32(at, true);
    out.push(new Uint8Array(buffer, at + 4, n));
    at += 4 + n;
  }
  return out;
}

function equal(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(a[k], b[k]));
}

let sink = 0; // every result feeds it, so no call is optimised away

function pass(fn, items) {
  for (let i = 0; i < items.length; i++) sink ^= fn(items[i]) === undefined ? 1 : 0;
}

// ns per message: one warm-up round, then `rounds` samples, each the mean over as many whole passes over `items`
// as fill `roundMs` (the clock is read between passes, so a round cannot end early whatever the JIT does meanwhile).
function time(fn, items, { rounds, roundMs }) {
  const samples = [];
  let passes = 0;
  for (let r = -1; r < rounds; r++) {
    let n = 0;
    const t0 = performance.now();
    let dt = 0;
    do {
      pass(fn, items);
      n++;
      dt = performance.now() - t0;
    } while (dt < roundMs);
    if (r >= 0) samples.push((dt * 1e6) / (n * items.length));
    passes += n;
  }
  return { samples, passes };
}

function clockStep() {
  // The smallest step performance.now() shows here (100 µs in Chromium unless the page is cross-origin isolated).
  let best = Infinity;
  for (let i = 0; i < 20; i++) {
    const a = performance.now();
    let b = a;
    while (b === a) b = performance.now();
    best = Math.min(best, b - a);
  }
  return best * 1000;
}

export async function run(config) {
  const codec = CODECS[config.family](config);
  const payloads = split(await (await fetch('/stream.bin')).arrayBuffer());
  const reference = await (await fetch('/reference.json')).json();
  if (payloads.length !== reference.length) throw new Error(`${payloads.length} payloads for ${reference.length} messages`);
  const utf8 = new TextDecoder();
  const frames = codec.text ? payloads.map((p) => utf8.decode(p)) : payloads.map((p) => p.slice());
  const natives = reference.map(codec.toNative);
  // Each kind's messages, then the whole stream: timed last, after every code path has run (and been optimised).
  const groups = {};
  for (const [i, msg] of reference.entries()) (groups[msg.type] ??= []).push(i);
  groups.mixed = [...reference.keys()];

  // Round trips first: the page's decoder reads what Python wrote, and reads back what it wrote itself.
  const roundtrip = {};
  for (const [kind, idx] of Object.entries(groups)) {
    if (kind === 'mixed') continue;
    const fromPython = idx.filter((i) => equal(codec.decode(frames[i]), reference[i])).length;
    const own = idx.filter((i) => equal(codec.decode(codec.encode(natives[i])), reference[i])).length;
    roundtrip[kind] = { messages: idx.length, from_python: fromPython, own };
  }
  // Warm up on the whole stream (the JIT compiles the hot paths), then each figure warms up for one round of its own.
  for (const until = performance.now() + config.warmupMs; performance.now() < until; ) {
    pass(codec.decode, frames);
    pass(codec.encode, natives);
  }
  const timing = { rounds: config.rounds, roundMs: config.roundMs };
  const results = {};
  for (const [kind, idx] of Object.entries(groups)) {
    const decoded = time(codec.decode, idx.map((i) => frames[i]), timing);
    const encoded = time(codec.encode, idx.map((i) => natives[i]), timing);
    results[kind] = { messages: idx.length, decode_ns: decoded.samples, encode_ns: encoded.samples, passes: [decoded.passes, encoded.passes] };
  }
  return {
    library: codec.library,
    results,
    roundtrip,
    clock_step_us: clockStep(),
    cross_origin_isolated: self.crossOriginIsolated === true,
    sink,
  };
}
