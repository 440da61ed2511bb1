// Chat persistence of Spike 6's Node server: every chat message becomes a PostgreSQL row, written as
// ../poc/persist.py writes them for the Python servers (the same table, the same batching, the same tally line).
//
// A message is appended to an in-memory buffer (already as its line of COPY's text format); one writer loop sends
// the buffer with `COPY chat_messages (...) FROM STDIN` (pg-copy-streams on a `pg` pool of at most two connections;
// a COPY is one statement, so one transaction, per batch) every `flushMs`, or as soon as `maxBatch` rows wait.
// One INSERT per message would cost a round trip and a commit (WAL flush) each. The price is durability: a crash
// loses at most `flushMs` of messages. On close the batch in flight is awaited (at most `closeTimeoutMs`), what is
// still buffered is written, and `persist: N rows in B batches, F lost` is printed: the line the harness reads.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

export const COLUMNS = ['room', 'sender', 'seq', 'body', 'server'];
const COPY_SQL = `COPY chat_messages (${COLUMNS.join(', ')}) FROM STDIN`;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const SPECIAL = /[\\\t\n\r]/;

/** A text value as a field of COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyField(text) {
  if (!SPECIAL.test(text)) return text;
  return text.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]);
}

/** Python's `int()` of a JSON value, as persist.py applies it (a missing field is 0); NaN where it would raise. */
export function toInt(value) {
  if (value === undefined) return 0;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'number') return Number.isFinite(value) ? Math.trunc(value) : NaN;
  if (typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)) return Number.parseInt(value, 10);
  return NaN;
}

/** Python's `str()` of a JSON value, close enough: a string as it is, a missing field empty, anything else as JSON. */
function toText(value) {
  if (value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export class ChatStore {
  /** Buffered writer of chat messages; `add` never waits for the database. */
  constructor(dsn, serverId, { flushMs = 50, maxBatch = 1000, closeTimeoutMs = 3000 } = {}) {
    this.dsn = dsn;
    this.serverId = serverId;
    this.flushMs = flushMs;
    this.maxBatch = maxBatch;
    // Under the harness's time between SIGTERM and SIGKILL, so the tally still prints.
    this.closeTimeoutMs = closeTimeoutMs;
    this.lines = [];
    this.inFlight = 0;
    this.written = 0;
    this.batches = 0;
    this.failed = 0;
    this.pool = null;
    this.task = null;
    this.closing = false;
    this.abandoned = false;
    this.full = false;
    this.wake = null;
  }

  async start() {
    this.pool = new pg.Pool({ connectionString: this.dsn, max: 2 });
    // An idle pooled connection that breaks emits 'error' on the pool; unhandled, it would end the process.
    this.pool.on('error', (err) => console.error(`pg pool: ${err.message}`));
    const client = await this.pool.connect(); // as asyncpg's pool opens one connection: a bad DSN fails the start
    client.release();
    this.task = this.writer();
  }

  /** Queue one chat message (its room, sender, sequence number and text). */
  add(room, msg) {
    const sender = toInt(msg.c);
    const seq = toInt(msg.seq);
    // Out of the columns' range, persist.py's batch would fail as a whole; here only this row is refused (counted lost).
    if (!(sender >= INT32_MIN && sender <= INT32_MAX && seq >= INT32_MIN && seq <= INT32_MAX)) {
      this.failed += 1;
      return;
    }
    this.lines.push(`${copyField(String(room))}\t${sender}\t${seq}\t${copyField(toText(msg.d))}\t${this.serverId}\n`);
    if (this.lines.length >= this.maxBatch) {
      this.full = true;
      this.wake?.();
    }
  }

  async flush() {
    if (this.lines.length === 0 || this.pool === null) return;
    const lines = this.lines;
    this.lines = [];
    this.inFlight = lines.length;
    let client = null;
    try {
      client = await this.pool.connect();
      await pipeline(Readable.from([Buffer.from(lines.join(''))]), client.query(copyFrom(COPY_SQL)));
      client.release();
      client = null;
      if (!this.abandoned) {
        this.written += lines.length;
        this.batches += 1;
      }
    } catch (err) {
      client?.release(err); // a connection a COPY failed on is closed, not given back to the pool
      if (!this.abandoned) {
        this.failed += lines.length; // counted, and the writer goes on
        console.error(`persist: ${lines.length} rows lost: ${err.message}`);
      }
    } finally {
      this.inFlight = 0;
    }
  }

  async writer() {
    while (!this.closing) {
      if (!this.full) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, this.flushMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.wake = null;
      this.full = false;
      await this.flush();
    }
  }

  /** Write what is buffered, close the pool, print the tally. */
  async close() {
    this.closing = true;
    this.wake?.(); // wake the writer now; it ends after the batch it is on
    let hung = false;
    if (this.task !== null) {
      // Awaited, not abandoned: a batch in flight is written. A database that does not answer is given closeTimeoutMs;
      // then the rows in flight and the buffered ones are counted lost.
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.closeTimeoutMs);
      });
      hung = (await Promise.race([this.task.then(() => 'done'), timeout])) === 'timeout';
      clearTimeout(timer);
    }
    if (hung) {
      this.abandoned = true;
      const lost = this.inFlight + this.lines.length;
      console.error(`persist: ${lost} rows lost: the database did not answer within ${this.closeTimeoutMs / 1000} s`);
      this.failed += lost;
      this.lines = [];
    } else {
      await this.flush();
      await this.pool?.end();
    }
    console.log(`persist: ${this.written} rows in ${this.batches} batches, ${this.failed} lost`);
  }
}
