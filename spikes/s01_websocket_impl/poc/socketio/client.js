// The browser client an app would ship for the Socket.IO option, on socket.io-client.
//
// socket.io-client already reconnects (exponential backoff with jitter), buffers
// emits while disconnected and falls back to HTTP long-polling; what is left
// to the app is re-joining rooms, because rooms belong to the server-side
// socket and a reconnect gets a new one.
import { io } from 'socket.io-client';

/**
 * Connect to `url` (http:// or https://) with the same small API as the native client.
 * @param {string} url
 * @param {{onMessage?: Function, onOpen?: Function, onClose?: Function}} [handlers]
 */
export function connect(url, { onMessage = () => {}, onOpen = () => {}, onClose = () => {} } = {}) {
  const rooms = new Set();
  const socket = io(url);
  socket.on('connect', () => {
    for (const room of rooms) socket.emit('join', { room });
    onOpen();
  });
  socket.on('disconnect', (reason) => onClose(reason));
  // Events carry the message without its op (the event name is the op): put it back.
  socket.onAny((op, data) => onMessage(data instanceof ArrayBuffer ? data : { ...data, op }));
  return {
    send(message) {
      if (message instanceof ArrayBuffer || ArrayBuffer.isView(message)) {
        socket.emit('echo', message);
      } else {
        const { op, ...data } = message;
        socket.emit(op, data);
      }
    },
    join(room) {
      rooms.add(room);
      if (socket.connected) socket.emit('join', { room });
    },
    close() {
      socket.close();
    },
    /** The engine.io transport in use: 'polling' until the upgrade to 'websocket' completes. */
    get transport() {
      return socket.io.engine ? socket.io.engine.transport.name : null;
    },
  };
}
