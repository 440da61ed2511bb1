// The browser client an app would ship for the native WebSocket option: no dependencies.
//
// What the browser's WebSocket lacks and a tabletop needs is added here:
// reconnect with exponential backoff and full jitter (base 250 ms, cap 10 s),
// re-joining rooms after a reconnect, and a bounded queue for messages sent
// while disconnected. JSON objects go as text frames; ArrayBuffers and typed
// arrays go as binary frames and come back as ArrayBuffers.

const BASE_MS = 250;
const CAP_MS = 10_000;

/**
 * Connect to `url` and stay connected until `close()`.
 * @param {string} url ws:// or wss:// URL
 * @param {{onMessage?: Function, onOpen?: Function, onClose?: Function, maxQueue?: number}} [handlers]
 */
export function connect(url, { onMessage = () => {}, onOpen = () => {}, onClose = () => {}, maxQueue = 256 } = {}) {
  const rooms = new Set();
  const queue = []; // messages sent while disconnected, oldest first
  let ws = null;
  let attempt = 0;
  let timer = null;
  let closed = false;

  function open() {
    ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      attempt = 0;
      // Rooms live in the server's memory of one connection: a new connection must join again.
      for (const room of rooms) ws.send(JSON.stringify({ op: 'join', room }));
      while (queue.length && ws.readyState === WebSocket.OPEN) ws.send(queue.shift());
      onOpen();
    };
    ws.onmessage = (event) => onMessage(typeof event.data === 'string' ? JSON.parse(event.data) : event.data);
    ws.onclose = (event) => {
      onClose(event);
      if (closed) return;
      // Full jitter: many clients dropped at once must not all come back at once.
      const delay = Math.random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt);
      attempt += 1;
      timer = setTimeout(open, delay);
    };
  }

  function transmit(data) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(data);
    } else {
      // Bounded: a long outage must not grow memory without limit; the oldest updates are the stalest.
      if (queue.length >= maxQueue) queue.shift();
      queue.push(data);
    }
  }

  open();
  return {
    send(message) {
      transmit(message instanceof ArrayBuffer || ArrayBuffer.isView(message) ? message : JSON.stringify(message));
    },
    join(room) {
      rooms.add(room);
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: 'join', room }));
    },
    close() {
      closed = true;
      clearTimeout(timer);
      ws.close(1000);
    },
  };
}
