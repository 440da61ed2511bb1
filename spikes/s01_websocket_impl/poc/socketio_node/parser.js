// socket.io's own parser (socket.io-parser), with one change: integers beyond 2^53 come back exactly as they arrived.
//
// JavaScript numbers are doubles, so JSON.parse rounds an integer past Number.MAX_SAFE_INTEGER (the load protocol's
// `t`, nanoseconds since the epoch, has 19 digits) and the echo would differ from the message sent, as it would in any
// Node Socket.IO app sent 64-bit integers. The decoder turns such a number (never digits inside a string) into a
// string holding its digits behind a NUL marker; the encoder writes that string back as the bare number. The server's
// code forwards `t` and never computes with it, so nothing else changes. The Python server keeps integers exact by
// itself (Python's int).
import { Decoder, Encoder, protocol } from 'socket.io-parser';

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
