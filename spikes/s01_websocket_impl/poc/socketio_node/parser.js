// socket.io's own parser (socket.io-parser), with two changes: integers beyond 2^53 come back exactly as they arrived, and
// a packet the decoder refuses is handed to the server to answer instead of ending the connection.
//
// JavaScript numbers are doubles, so JSON.parse rounds an integer past Number.MAX_SAFE_INTEGER (the load protocol's
// `t`, nanoseconds since the epoch, has 19 digits) and the echo would differ from the message sent, as it would in any
// Node Socket.IO app sent 64-bit integers. The decoder turns such a number (never digits inside a string) into a
// string holding its digits behind a NUL marker; the encoder writes that string back as the bare number. The server's
// code forwards `t` and never computes with it, so nothing else changes. The Python server keeps integers exact by
// itself (Python's int).
//
// socket.io closes the connection, without a WebSocket status code, on a packet its decoder throws on (not JSON, an
// unknown packet type, a binary frame no event announced) and on an event for a namespace the client never connected.
// Here the decoder hands such a packet on as the event REFUSED on the main namespace, with the reason and, for a
// namespace, its name; server.js answers with an `error` event or a connect error, and the connection stays open.
import { Decoder, Encoder, PacketType, protocol } from 'socket.io-parser';

/** The event a refused packet becomes, with (reason, namespace?): a Symbol, so no client can send it. */
export const REFUSED = Symbol('refused packet');

class NotConnected extends Error {
  constructor(nsp) {
    super('not connected to this namespace');
    this.nsp = nsp;
  }
}

const MARK = '\\u0000n:'; // written into the JSON text as an escape, so JSON.parse reads a NUL
// A JSON string (skipped whole, escapes included) or a number token; only integer tokens are rewritten.
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const LONG = /\d{16}/; // fewer digits than 16 is always a safe integer: skip the pass
const MARKED = /"\\u0000n:(-?\d+)"/g; // JSON.stringify escapes the NUL as \u0000

function keepLongIntegers(text) {
  if (!LONG.test(text)) return text;
  return text.replace(TOKENS, (token) =>
    token[0] !== '"' && /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? `"${MARK}${token}"` : token,
  );
}

class ExactDecoder extends Decoder {
  // The namespaces this client asked to connect to and did not leave (one the server refused stays: socket.io then closes).
  namespaces = new Set();

  add(obj) {
    try {
      super.add(obj);
    } catch (err) {
      this.destroy(); // forget a binary packet half reconstructed
      super.emitReserved('decoded', { type: PacketType.EVENT, nsp: '/', data: [REFUSED, err.message, err.nsp] });
    }
  }

  decodeString(str) {
    const packet = super.decodeString(str);
    if (packet.type === PacketType.CONNECT) this.namespaces.add(packet.nsp);
    else if (!this.namespaces.has(packet.nsp)) throw new NotConnected(packet.nsp);
    else if (packet.type === PacketType.DISCONNECT) this.namespaces.delete(packet.nsp);
    return packet;
  }

  tryParse(str) {
    return super.tryParse(keepLongIntegers(str));
  }
}

class ExactEncoder extends Encoder {
  encodeAsString(obj) {
    const text = super.encodeAsString(obj);
    return text.includes('\\u0000n:') ? text.replace(MARKED, '$1') : text;
  }
}

export default { protocol, Encoder: ExactEncoder, Decoder: ExactDecoder };
