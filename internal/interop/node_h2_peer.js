#!/usr/bin/env node
// WebSocket client over HTTP/2 (RFC 8441 extended CONNECT) for duplex interop
// tests, on Node's built-in http2 module. It writes the WebSocket framing
// (RFC 6455) and permessage-deflate (RFC 7692) itself, so that it sees every
// frame the server sends and can count the Close frames.
//
//   node node_h2_peer.js --url https://127.0.0.1:N [--insecure] [--timeout S]
//        [--idle MS] [--max-size N] [--subprotocol P]
//
// The server must answer /ws/echo as the Go tests' HTTP/2 echo handler does:
// echo every message with its type; on the text "ping-me", ping the client
// and then send the text "pong-ok"; on the text "close:<code>:<reason>",
// close with that code and reason.
//
// One HTTP/2 connection carries every WebSocket. Three of them run at the
// same time: "plain" (no extension, offers the subprotocol), "deflate"
// (permessage-deflate with context takeover) and "deflate-no-takeover". Each
// echoes text and binary messages of boundary sizes up to --max-size
// (default 1 MiB; at most 1 MiB when compressed), fragmented messages with a
// ping between the fragments, a ping, a server ping, and, with --idle, a
// message after that many idle milliseconds; then it closes (4000 with a
// reason, 1000 without, and a Close frame without a code). Two more ask the
// server to close: with 4001 and a reason, and with 1000. After each
// closing handshake it waits for the server to end the stream before it
// ends its own side.
//
// stdout, one JSON object per line:
//   {"event":"settings","ok":true}                      the server's SETTINGS allow extended CONNECT
//   {"event":"open","name":"plain","status":200,"protocol":"","extensions":""}
//   {"event":"step","name":"plain/text-0","ok":true,"ms":1}
//   {"event":"closed","name":"plain","initiator":"client","code":4000,"reason":"...",
//    "closeFrames":1,"framesAfterClose":0,"streamEnded":true,"rstCode":0,
//    "closeFrameMs":1,"endMs":1,"ms":3}
//   {"event":"result","ok":true}                        or "ok":false,"error":"..."
//   {"event":"goaway","code":0,"lastStreamID":7}         the server sent GOAWAY
//   {"event":"session-closed"}                          the connection ended before we were done
//   {"event":"error","error":"..."}                     the session failed
// closed: code/reason are the server's Close frame (1005 and "" when it had
// no code); closeFrames counts the server's Close frames on the stream,
// framesAfterClose the frames after the first; streamEnded is whether the
// server ended the stream (END_STREAM) within 5 s of the handshake;
// rstCode is the stream's RST_STREAM code (0 when none or NO_ERROR);
// closeFrameMs, endMs and ms are the milliseconds from the start of the
// handshake to the server's Close frame, to the end of the stream and to
// the end of the check.
// Exit status: 0 pass, 1 failure or timeout, 2 bad arguments.
'use strict';

const crypto = require('crypto');
const http2 = require('http2');
const zlib = require('zlib');
const { makeBinary, makeText } = require('./payloads');

const MAX_PAYLOAD = 64 * 1024 * 1024;
const EVENT_TIMEOUT_MS = 30000;
const STREAM_END_TIMEOUT_MS = 5000;
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

const OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xa;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
  const opts = { timeout: 120, idle: 0, maxSize: 1 << 20, subprotocol: 'duplex.h2' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(a + ' needs a value');
      return argv[++i];
    };
    if (a === '--insecure') opts.insecure = true;
    else if (a === '--url') opts.url = value();
    else if (a === '--timeout') opts.timeout = Number(value());
    else if (a === '--idle') opts.idle = Number(value());
    else if (a === '--max-size') opts.maxSize = Number(value());
    else if (a === '--subprotocol') opts.subprotocol = value();
    else throw new Error('unknown argument: ' + a);
  }
  if (!opts.url) throw new Error('--url is required');
  return opts;
}

// ------------------------------------------------------------ payloads

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(what + ': nothing within ' + ms + ' ms')), ms); }),
  ]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------ stream bytes

// ByteQueue collects what arrives on an HTTP/2 stream and hands it out by
// the byte count, without copying more than a frame header at a time.
class ByteQueue {
  constructor(stream) {
    this.chunks = [];
    this.length = 0;
    this.ended = false; // END_STREAM seen
    this.closed = false; // the stream is gone
    this.error = null;
    this.waiters = [];
    stream.on('data', (c) => { this.chunks.push(c); this.length += c.length; this.notify(); });
    stream.on('end', () => { this.ended = true; this.endedAt = Date.now(); this.notify(); });
    stream.on('close', () => { this.closed = true; this.closedAt = Date.now(); this.notify(); });
    stream.on('error', (e) => { this.error = e; this.notify(); });
  }

  notify() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  waitChange() {
    return new Promise((resolve) => { this.waiters.push(resolve); });
  }

  // need waits until n bytes are buffered; false if the stream ends first.
  async need(n) {
    while (this.length < n) {
      if (this.error) throw this.error;
      if (this.ended || this.closed) return false;
      await this.waitChange();
    }
    return true;
  }

  take(n) {
    this.length -= n;
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first.length === n) { this.chunks.shift(); return first; }
    if (first.length > n) { this.chunks[0] = first.subarray(n); return first.subarray(0, n); }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift(); else this.chunks[0] = c.subarray(k);
    }
    return out;
  }

  // ends waits up to ms for the stream to end or close.
  async ends(ms) {
    const deadline = Date.now() + ms;
    while (!this.ended && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer;
      await Promise.race([this.waitChange(), new Promise((r) => { timer = setTimeout(r, left); })]);
      clearTimeout(timer);
    }
    return true;
  }
}

// readFrame returns the next frame the server sent, or null at the end of
// the stream.
async function readFrame(q) {
  if (!await q.need(2)) {
    if (q.length > 0) throw new Error('stream ended inside a frame header');
    return null;
  }
  const h = q.take(2);
  const must = async (n) => { if (!await q.need(n)) throw new Error('stream ended inside a frame'); };
  let len = h[1] & 0x7f;
  if (len === 126) {
    await must(2);
    len = q.take(2).readUInt16BE(0);
  } else if (len === 127) {
    await must(8);
    const big = q.take(8).readBigUInt64BE(0);
    if (big > BigInt(MAX_PAYLOAD)) throw new Error('frame of ' + big + ' bytes');
    len = Number(big);
  }
  if (h[1] & 0x80) throw new Error('the server masked a frame (RFC 6455 §5.1 forbids it)');
  await must(len);
  return {
    fin: (h[0] & 0x80) !== 0,
    rsv1: (h[0] & 0x40) !== 0,
    rsv23: (h[0] & 0x30) !== 0,
    opcode: h[0] & 0x0f,
    payload: q.take(len),
  };
}

// encodeFrame returns a masked client frame (RFC 6455 §5.2, §5.3).
function encodeFrame(opcode, payload, fin, rsv1) {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const frame = Buffer.allocUnsafe(2 + ext + 4 + n);
  frame[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (ext === 0) frame[1] = 0x80 | n;
  else if (ext === 2) { frame[1] = 0x80 | 126; frame.writeUInt16BE(n, 2); }
  else { frame[1] = 0x80 | 127; frame.writeBigUInt64BE(BigInt(n), 2); }
  const key = crypto.randomBytes(4);
  key.copy(frame, 2 + ext);
  const off = 2 + ext + 4;
  for (let i = 0; i < n; i++) frame[off + i] = payload[i] ^ key[i & 3];
  return frame;
}

// ------------------------------------------------------------ permessage-deflate

// parseDeflate reads the server's permessage-deflate answer.
function parseDeflate(header) {
  if (!header) return null;
  const parts = header.split(';').map((s) => s.trim());
  if (parts[0] !== 'permessage-deflate') throw new Error('unexpected extension answer ' + JSON.stringify(header));
  const p = { serverNoTakeover: false, clientNoTakeover: false, clientBits: 15, serverBits: 15 };
  for (const kv of parts.slice(1)) {
    const [k, v] = kv.split('=').map((s) => s && s.trim());
    if (k === 'server_no_context_takeover') p.serverNoTakeover = true;
    else if (k === 'client_no_context_takeover') p.clientNoTakeover = true;
    else if (k === 'server_max_window_bits') p.serverBits = Number(v);
    else if (k === 'client_max_window_bits') p.clientBits = Number(v);
    else throw new Error('unknown permessage-deflate parameter ' + JSON.stringify(kv));
  }
  return p;
}

// zflush writes input to a zlib stream and returns what it produced after
// a sync flush.
function zflush(z, input) {
  return new Promise((resolve, reject) => {
    const out = [];
    const onData = (c) => out.push(c);
    const onError = (e) => { z.off('data', onData); reject(e); };
    z.on('data', onData);
    z.once('error', onError);
    z.write(input);
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      z.off('data', onData);
      z.off('error', onError);
      resolve(Buffer.concat(out));
    });
  });
}

class Deflate {
  constructor(p) {
    this.p = p;
    // Node's zlib does not do an 8-bit raw window; 9 is within any
    // client_max_window_bits the server may name.
    this.bits = Math.max(9, p.clientBits);
    this.deflater = null;
    this.inflater = null;
  }

  async compress(data) {
    if (!this.deflater || this.p.clientNoTakeover) {
      if (this.deflater) this.deflater.close();
      this.deflater = zlib.createDeflateRaw({ windowBits: this.bits });
    }
    const out = await zflush(this.deflater, data);
    if (out.length < 4 || !out.subarray(out.length - 4).equals(DEFLATE_TAIL)) throw new Error('deflate output without a sync-flush tail');
    return out.subarray(0, out.length - 4);
  }

  async decompress(data) {
    if (!this.inflater || this.p.serverNoTakeover) {
      if (this.inflater) this.inflater.close();
      this.inflater = zlib.createInflateRaw({ windowBits: 15 });
    }
    return zflush(this.inflater, Buffer.concat([data, DEFLATE_TAIL]));
  }

  close() {
    if (this.deflater) this.deflater.close();
    if (this.inflater) this.inflater.close();
  }
}

// ------------------------------------------------------------ WebSocket

class WS {
  constructor(name, stream, headers) {
    this.name = name;
    this.stream = stream;
    this.q = new ByteQueue(stream);
    this.protocol = headers['sec-websocket-protocol'] || '';
    this.extensions = headers['sec-websocket-extensions'] || '';
    const p = parseDeflate(this.extensions);
    this.deflate = p ? new Deflate(p) : null;
    this.pingsAnswered = 0;
    this.closeFrames = 0;
    this.framesAfterClose = 0;
    this.closeFrame = null;
    this.pending = []; // events read ahead
  }

  write(buf) {
    this.stream.write(buf);
  }

  sendFrame(opcode, payload, fin = true, rsv1 = false) {
    this.write(encodeFrame(opcode, payload, fin, rsv1));
  }

  // send sends one message as a single frame, compressed when
  // permessage-deflate is on.
  async send(binary, data) {
    const op = binary ? OP_BINARY : OP_TEXT;
    if (this.deflate) this.sendFrame(op, await this.deflate.compress(data), true, true);
    else this.sendFrame(op, data);
  }

  // sendFragmented sends pieces as one message, one frame each (compressed
  // as a whole and then cut where the pieces are), calling between(i)
  // after frame i.
  async sendFragmented(binary, pieces, between) {
    let frames = pieces;
    if (this.deflate) {
      const whole = await this.deflate.compress(Buffer.concat(pieces));
      // Cut the compressed bytes into as many frames as there are pieces.
      const cut = Math.ceil(whole.length / pieces.length);
      frames = pieces.map((_, i) => whole.subarray(Math.min(i * cut, whole.length), Math.min((i + 1) * cut, whole.length)));
    }
    frames.forEach((f, i) => {
      this.sendFrame(i === 0 ? (binary ? OP_BINARY : OP_TEXT) : OP_CONT, f, i === frames.length - 1, i === 0 && !!this.deflate);
      if (between) between(i);
    });
  }

  sendClose(code, reason) {
    let payload = Buffer.alloc(0);
    if (code !== undefined) {
      const r = Buffer.from(reason || '', 'utf8');
      payload = Buffer.allocUnsafe(2 + r.length);
      payload.writeUInt16BE(code, 0);
      r.copy(payload, 2);
    }
    this.sendFrame(OP_CLOSE, payload);
  }

  // next returns the next event: a whole message, a pong, the server's
  // Close frame, or the end of the stream. Pings are answered here.
  async next() {
    if (this.pending.length) return this.pending.shift();
    let msg = null; // { binary, compressed, parts }
    for (;;) {
      const f = await readFrame(this.q);
      if (f === null) {
        if (msg) throw new Error('stream ended inside a message');
        return { kind: 'end' };
      }
      if (this.closeFrame) {
        this.framesAfterClose++;
        if (f.opcode === OP_CLOSE) this.closeFrames++;
        continue;
      }
      if (f.rsv23) throw new Error('frame with RSV2 or RSV3 set');
      if (f.opcode >= 0x8) {
        if (!f.fin || f.payload.length > 125) throw new Error('malformed control frame');
        if (f.rsv1) throw new Error('control frame with RSV1');
        if (f.opcode === OP_PING) {
          this.sendFrame(OP_PONG, f.payload);
          this.pingsAnswered++;
          continue;
        }
        if (f.opcode === OP_PONG) return { kind: 'pong', data: f.payload };
        if (f.opcode === OP_CLOSE) {
          this.closeFrames++;
          const p = f.payload;
          if (p.length === 1) throw new Error('Close frame with a 1-byte payload');
          this.closeFrame = p.length >= 2
            ? { code: p.readUInt16BE(0), reason: p.subarray(2).toString('utf8') }
            : { code: 1005, reason: '' };
          this.closeFrameAt = Date.now();
          if (msg) throw new Error('Close frame inside a message');
          return { kind: 'close', code: this.closeFrame.code, reason: this.closeFrame.reason };
        }
        throw new Error('unknown control opcode ' + f.opcode);
      }
      if (f.opcode === OP_CONT) {
        if (!msg) throw new Error('continuation frame without a message');
        if (f.rsv1) throw new Error('RSV1 on a continuation frame');
      } else if (f.opcode === OP_TEXT || f.opcode === OP_BINARY) {
        if (msg) throw new Error('new message inside a fragmented message');
        if (f.rsv1 && !this.deflate) throw new Error('RSV1 set without permessage-deflate');
        msg = { binary: f.opcode === OP_BINARY, compressed: f.rsv1, parts: [], size: 0 };
      } else {
        throw new Error('unknown data opcode ' + f.opcode);
      }
      msg.parts.push(f.payload);
      msg.size += f.payload.length;
      if (msg.size > MAX_PAYLOAD) throw new Error('message over ' + MAX_PAYLOAD + ' bytes');
      if (!f.fin) continue;
      let data = Buffer.concat(msg.parts);
      if (msg.compressed) data = await this.deflate.decompress(data);
      return { kind: 'message', binary: msg.binary, data };
    }
  }

  async expect(kind, what) {
    const ev = await withTimeout(this.next(), EVENT_TIMEOUT_MS, what);
    if (ev.kind !== kind) {
      throw new Error(what + ': expected ' + kind + ', got ' + ev.kind + (ev.code ? ' ' + ev.code + ' ' + JSON.stringify(ev.reason) : ''));
    }
    return ev;
  }

  async expectEcho(what, binary, want) {
    const ev = await this.expect('message', what);
    if (ev.binary !== binary) throw new Error(what + ': echo is ' + (ev.binary ? 'binary' : 'text'));
    if (!ev.data.equals(want)) {
      let i = 0;
      while (i < want.length && i < ev.data.length && want[i] === ev.data[i]) i++;
      throw new Error(what + ': echo of ' + ev.data.length + ' bytes, want ' + want.length + '; first difference at ' + i);
    }
  }

  // finishClose reads what follows the server's Close frame, counting
  // frames, until the server ends the stream, and only then ends ours:
  // once the closing handshake is done the server must end the stream by
  // itself (RFC 8441 §5 maps the TCP close to END_STREAM).
  async finishClose(initiator, t0) {
    const drain = (async () => {
      for (;;) {
        const ev = await this.next();
        if (ev.kind === 'end') return;
      }
    })();
    drain.catch(() => {}); // judged below, or moot when the stream hangs
    let streamEnded = await this.q.ends(STREAM_END_TIMEOUT_MS);
    if (streamEnded) {
      try {
        await withTimeout(drain, 1000, 'reading the rest of the stream');
      } catch (e) {
        // A stream reset after END_STREAM ends reading with an error;
        // what counts is that the stream ended.
        if (!this.q.ended && !this.q.closed) throw e;
      }
    }
    if (!this.stream.destroyed) this.stream.end();
    streamEnded = this.q.ended;
    const res = {
      event: 'closed',
      name: this.name,
      initiator,
      code: this.closeFrame.code,
      reason: this.closeFrame.reason,
      closeFrames: this.closeFrames,
      framesAfterClose: this.framesAfterClose,
      streamEnded,
      streamClosed: this.q.closed,
      rstCode: this.stream.rstCode || 0,
      closeFrameMs: this.closeFrameAt - t0,
      endMs: (this.q.endedAt || Date.now()) - t0,
      ms: Date.now() - t0,
    };
    emit(res);
    if (this.deflate) this.deflate.close();
    if (this.closeFrames !== 1) throw new Error(this.name + ': the server sent ' + this.closeFrames + ' Close frames, want 1');
    if (this.framesAfterClose !== 0) throw new Error(this.name + ': the server sent ' + this.framesAfterClose + ' frames after its Close frame');
    if (!streamEnded) throw new Error(this.name + ': the server did not end the stream within ' + STREAM_END_TIMEOUT_MS + ' ms of the close handshake');
    if (res.rstCode !== 0) throw new Error(this.name + ': the stream was reset with code ' + res.rstCode);
    return res;
  }

  // closeFromClient sends our Close frame and checks the server's answer.
  async closeFromClient(code, reason) {
    const t0 = Date.now();
    this.sendClose(code, reason);
    const ev = await this.expect('close', this.name + ' close');
    const want = code === undefined ? 1005 : code;
    const res = await this.finishClose('client', t0);
    if (ev.code !== want) throw new Error(this.name + ': the server answered our Close ' + want + ' with ' + ev.code);
    return res;
  }

  // closeFromServer asks the server to close, answers its Close frame and
  // checks it.
  async closeFromServer(code, reason) {
    const t0 = Date.now();
    await this.send(false, Buffer.from('close:' + code + ':' + reason, 'utf8'));
    const ev = await this.expect('close', this.name + ' server close');
    this.sendClose(ev.code, '');
    await this.finishClose('server', t0);
    if (ev.code !== code || ev.reason !== reason) {
      throw new Error(this.name + ': server closed with ' + ev.code + ' ' + JSON.stringify(ev.reason) +
        ', want ' + code + ' ' + JSON.stringify(reason));
    }
  }
}

// ------------------------------------------------------------ client

// awaitConnectSettings waits for the server's first SETTINGS frame and
// requires SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3). It must be
// called right after http2.connect, before the frame can have arrived.
function awaitConnectSettings(session) {
  return withTimeout(new Promise((resolve, reject) => {
    const check = (s) => {
      if (s.enableConnectProtocol) resolve();
      else reject(new Error('the server\'s SETTINGS do not enable extended CONNECT: ' + JSON.stringify(s)));
    };
    session.once('remoteSettings', check);
    session.once('error', reject);
  }), EVENT_TIMEOUT_MS, 'waiting for the server\'s SETTINGS');
}

// open opens a WebSocket on a new stream of session (RFC 8441 §4, §5).
function open(session, authority, name, path, offer) {
  const headers = {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': path,
    ':authority': authority,
    'sec-websocket-version': '13',
  };
  if (offer.extensions) headers['sec-websocket-extensions'] = offer.extensions;
  if (offer.subprotocol) headers['sec-websocket-protocol'] = offer.subprotocol;
  return withTimeout(new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: false });
    stream.once('error', reject);
    stream.once('response', (h) => {
      stream.off('error', reject);
      const status = h[':status'];
      if (status !== 200) {
        reject(new Error(name + ': extended CONNECT answered ' + status));
        return;
      }
      try {
        const ws = new WS(name, stream, h);
        emit({ event: 'open', name, status, protocol: ws.protocol, extensions: ws.extensions });
        resolve(ws);
      } catch (e) {
        reject(e);
      }
    });
  }), EVENT_TIMEOUT_MS, name + ': opening');
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    emit({ event: 'step', name, ok: false, error: String(e && e.message || e) });
    throw e;
  }
  emit({ event: 'step', name, ok: true, ms: Date.now() - t0 });
}

// exercise runs the echo steps on ws.
async function exercise(ws, opts, seedBase) {
  const n = ws.name;
  // Compressing megabytes is slow for a server under the race detector.
  const max = ws.deflate ? Math.min(opts.maxSize, 1 << 20) : opts.maxSize;
  const sizes = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 4 << 20].filter((s) => s <= max);
  let seed = seedBase;
  for (const binary of [false, true]) {
    for (const size of sizes) {
      const what = n + '/' + (binary ? 'binary-' : 'text-') + size;
      const data = binary ? makeBinary(size, seed++) : makeText(size, seed++);
      await step(what, async () => {
        await ws.send(binary, data);
        await ws.expectEcho(what, binary, data);
      });
    }
  }
  for (const binary of [false, true]) {
    const what = n + '/' + (binary ? 'binary' : 'text') + '-fragmented';
    await step(what, async () => {
      const mk = binary ? makeBinary : makeText;
      const pieces = [mk(10, seed++), mk(0, seed++), mk(70000, seed++), mk(3, seed++)];
      const ping = Buffer.from('between fragments');
      // A control frame may come between the fragments (RFC 6455 §5.4).
      await ws.sendFragmented(binary, pieces, (i) => { if (i === 1) ws.sendFrame(OP_PING, ping); });
      const pong = await ws.expect('pong', what + ' pong');
      if (!pong.data.equals(ping)) throw new Error('pong carries ' + JSON.stringify(pong.data.toString()));
      await ws.expectEcho(what, binary, Buffer.concat(pieces));
    });
  }
  await step(n + '/ping', async () => {
    const payload = Buffer.from('ping from node h2 ✓');
    ws.sendFrame(OP_PING, payload);
    const ev = await ws.expect('pong', 'ping');
    if (!ev.data.equals(payload)) throw new Error('pong carries ' + JSON.stringify(ev.data.toString()));
  });
  await step(n + '/server-ping', async () => {
    const before = ws.pingsAnswered;
    await ws.send(false, Buffer.from('ping-me'));
    const ev = await ws.expect('message', 'server ping');
    if (ev.data.toString() !== 'pong-ok') throw new Error('the server reports ' + JSON.stringify(ev.data.toString()));
    if (ws.pingsAnswered !== before + 1) throw new Error('answered ' + (ws.pingsAnswered - before) + ' server pings, want 1');
  });
  if (opts.idle > 0) {
    await step(n + '/idle-' + opts.idle + 'ms', async () => {
      await sleep(opts.idle);
      const data = makeText(1000, seed++);
      await ws.send(false, data);
      await ws.expectEcho('echo after idling', false, data);
    });
  }
}

async function run(opts) {
  const url = new URL(opts.url);
  const session = http2.connect(url.origin, {
    rejectUnauthorized: !opts.insecure,
    settings: { enablePush: false },
  });
  session.on('error', (e) => emit({ event: 'error', error: 'session: ' + (e && e.message || e) }));
  session.on('goaway', (code, lastStreamID) => emit({ event: 'goaway', code, lastStreamID }));
  session.on('close', () => { if (!session.closedByUs) emit({ event: 'session-closed' }); });
  try {
    await awaitConnectSettings(session);
    emit({ event: 'settings', ok: true });
    const authority = url.host;
    const base = url.pathname.replace(/\/$/, '');
    const echo = base + '/ws/echo';

    const setups = [
      { name: 'plain', offer: { subprotocol: opts.subprotocol }, close: [4000, 'bye from node h2 ✓'] },
      { name: 'deflate', offer: { extensions: 'permessage-deflate; client_max_window_bits' }, close: [1000, ''] },
      { name: 'deflate-no-takeover', offer: { extensions: 'permessage-deflate; server_no_context_takeover; client_no_context_takeover' }, close: [] },
    ];
    // All at once, on one HTTP/2 connection.
    await Promise.all(setups.map(async (s, i) => {
      const ws = await open(session, authority, s.name, echo, s.offer);
      await exercise(ws, opts, 1 + 1000 * i);
      await step(s.name + '/client-close', () => ws.closeFromClient(...s.close));
    }));
    for (const [code, reason] of [[4001, 'server bye ✓'], [1000, '']]) {
      const name = 'server-close-' + code;
      const ws = await open(session, authority, name, echo, {});
      await step(name, () => ws.closeFromServer(code, reason));
    }
    emit({ event: 'result', ok: true });
  } catch (e) {
    emit({ event: 'result', ok: false, error: String(e && e.stack || e) });
    process.exitCode = 1;
  } finally {
    session.closedByUs = true;
    session.close();
  }
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    emit({ event: 'result', ok: false, error: String(e && e.message || e) });
    process.exit(2);
  }
  setTimeout(() => {
    emit({ event: 'result', ok: false, error: 'timeout after ' + opts.timeout + ' s' });
    process.exit(1);
  }, opts.timeout * 1000).unref();
  // Go's test harness holds our stdin open; EOF means it gave up.
  process.stdin.on('end', () => {
    emit({ event: 'result', ok: false, error: 'stdin closed' });
    process.exit(1);
  });
  process.stdin.resume();
  run(opts).then(() => process.exit(process.exitCode || 0));
}

main();
