#!/usr/bin/env node
// Real WebSocket peer (the `ws` npm package) for duplex interop tests.
//
//   node node_peer.js server --port 0 [--host 127.0.0.1] [--deflate]
//        [--no-context-takeover] [--tls-cert F --tls-key K] [--log-headers]
//        [--subprotocol P] [--ignore-stdin] [--timeout S]
//   node node_peer.js client --url ws://127.0.0.1:N/path [--deflate]
//        [--no-context-takeover] [--insecure] [--subprotocol P] [--timeout S]
//        [--server-close] [--max-size N]
//
// Writes one JSON object per line on stdout; see README.md.
'use strict';

const fs = require('fs');
const path = require('path');
const http = require('http');
const https = require('https');
const { WebSocket, WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));
const { makeBinary, makeText } = require('./payloads');

const MAX_PAYLOAD = 64 * 1024 * 1024;

function emit(obj) {
  // stdout is a pipe or file: writes are synchronous on Linux, so a
  // process.exit() right after emit() does not lose the line.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
  const opts = { role: argv[0], port: 0, host: '127.0.0.1', timeout: 120 };
  const flags = {
    '--deflate': 'deflate', '--no-context-takeover': 'noContextTakeover',
    '--insecure': 'insecure', '--log-headers': 'logHeaders', '--ignore-stdin': 'ignoreStdin',
    '--server-close': 'serverClose',
  };
  const valued = {
    '--port': 'port', '--host': 'host', '--url': 'url', '--tls-cert': 'tlsCert',
    '--tls-key': 'tlsKey', '--subprotocol': 'subprotocol', '--timeout': 'timeout',
    '--max-size': 'maxSize',
  };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (flags[a]) opts[flags[a]] = true;
    else if (valued[a] && i + 1 < argv.length) opts[valued[a]] = argv[++i];
    else throw new Error('unknown or incomplete argument: ' + a);
  }
  opts.port = Number(opts.port);
  opts.timeout = Number(opts.timeout);
  opts.maxSize = opts.maxSize === undefined ? Infinity : Number(opts.maxSize);
  return opts;
}

function deflateOption(opts) {
  if (!opts.deflate) return false;
  const o = { threshold: 0 }; // compress every message, even tiny ones
  if (opts.noContextTakeover) {
    o.serverNoContextTakeover = true;
    o.clientNoContextTakeover = true;
  }
  return o;
}

function hardTimeout(opts, onFire) {
  const t = setTimeout(onFire, opts.timeout * 1000);
  t.unref();
}

// ---------------------------------------------------------------- server

function runServer(opts) {
  let server;
  if (opts.tlsCert || opts.tlsKey) {
    server = https.createServer({
      cert: fs.readFileSync(opts.tlsCert),
      key: fs.readFileSync(opts.tlsKey),
    });
  } else {
    server = http.createServer();
  }
  server.on('request', (req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain' });
    res.end('websocket only\n');
  });

  const wssOpts = {
    server,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: deflateOption(opts),
  };
  if (opts.subprotocol) {
    wssOpts.handleProtocols = (protocols) => (protocols.has(opts.subprotocol) ? opts.subprotocol : false);
  }
  const wss = new WebSocketServer(wssOpts);
  // Remember the Sec-WebSocket-Extensions response header we answer with.
  wss.on('headers', (headers, req) => {
    for (const h of headers) {
      const m = /^sec-websocket-extensions:\s*(.*)$/i.exec(h);
      if (m) req.duplexExtensions = m[1];
    }
  });

  wss.on('connection', (ws, req) => {
    const ev = {
      event: 'connection',
      path: req.url,
      protocol: ws.protocol,
      extensions: req.duplexExtensions || '',
    };
    if (opts.logHeaders) {
      ev.headers = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i].toLowerCase();
        ev.headers[k] = ev.headers[k] === undefined ? req.rawHeaders[i + 1] : ev.headers[k] + ', ' + req.rawHeaders[i + 1];
      }
    }
    emit(ev);

    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        const s = data.toString('utf8');
        const m = /^close:(\d+):([\s\S]*)$/.exec(s);
        if (m) {
          ws.close(Number(m[1]), m[2]);
          return;
        }
      }
      ws.send(data, { binary: isBinary });
    });
    ws.on('ping', (data) => emit({ event: 'ping', size: data.length }));
    ws.on('close', (code, reason) => emit({ event: 'close', code, reason: reason.toString('utf8') }));
    ws.on('error', (err) => emit({ event: 'error', error: String(err && err.message || err) }));
  });
  wss.on('error', (err) => emit({ event: 'error', error: String(err && err.message || err) }));

  const shutdown = (why) => {
    emit({ event: 'exit', reason: why });
    for (const c of wss.clients) c.terminate();
    process.exit(0);
  };
  if (!opts.ignoreStdin) {
    process.stdin.on('end', () => shutdown('stdin-eof'));
    process.stdin.on('error', () => shutdown('stdin-error'));
    process.stdin.resume();
  }
  hardTimeout(opts, () => shutdown('timeout'));

  server.listen(opts.port, opts.host, () => {
    emit({ event: 'listening', port: server.address().port });
  });
}

// ---------------------------------------------------------------- client

function runClient(opts) {
  const label = 'node';
  let finished = false;
  const finish = (ok, error) => {
    if (finished) return;
    finished = true;
    const ev = { event: 'result', ok };
    if (!ok) ev.error = String(error);
    emit(ev);
    process.exit(ok ? 0 : 1);
  };
  hardTimeout(opts, () => finish(false, 'timeout after ' + opts.timeout + 's'));

  const wsOpts = { maxPayload: MAX_PAYLOAD, perMessageDeflate: deflateOption(opts) };
  if (opts.insecure) wsOpts.rejectUnauthorized = false;
  const ws = new WebSocket(opts.url, opts.subprotocol ? [opts.subprotocol] : [], wsOpts);

  // Single-consumer queue of incoming events.
  const queue = [];
  let waiter = null;
  const push = (ev) => {
    if (waiter) { const w = waiter; waiter = null; w(ev); } else queue.push(ev);
  };
  const next = () => new Promise((resolve) => {
    if (queue.length) resolve(queue.shift()); else waiter = resolve;
  });
  let respExtensions = '';
  ws.on('upgrade', (res) => { respExtensions = res.headers['sec-websocket-extensions'] || ''; });
  ws.on('message', (data, isBinary) => push({ kind: 'message', data, isBinary }));
  ws.on('pong', (data) => push({ kind: 'pong', data }));
  ws.on('close', (code, reason) => push({ kind: 'close', code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => { emit({ event: 'error', error: String(err && err.message || err) }); finish(false, err && err.message || err); });

  const expectMessage = async (name, want, wantBinary) => {
    const ev = await next();
    if (ev.kind !== 'message') throw new Error(name + ': expected message, got ' + ev.kind + (ev.code ? ' ' + ev.code : ''));
    if (ev.isBinary !== wantBinary) throw new Error(name + ': wrong type: got ' + (ev.isBinary ? 'binary' : 'text'));
    if (!Buffer.isBuffer(ev.data) || !ev.data.equals(want)) {
      throw new Error(name + ': echo mismatch: got ' + (ev.data && ev.data.length) + ' bytes, want ' + want.length);
    }
  };
  const step = async (name, fn) => {
    const t0 = Date.now();
    try {
      await fn();
    } catch (e) {
      emit({ event: 'step', name, ok: false, error: String(e && e.message || e) });
      throw e;
    }
    emit({ event: 'step', name, ok: true, ms: Date.now() - t0 });
  };

  ws.on('open', async () => {
    emit({ event: 'open', protocol: ws.protocol, extensions: respExtensions });
    try {
      const sizes = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 16 << 20].filter((n) => n <= opts.maxSize);
      let seed = 1;
      for (const binary of [false, true]) {
        for (const size of sizes) {
          const name = (binary ? 'binary-' : 'text-') + size;
          const data = binary ? makeBinary(size, seed++) : makeText(size, seed++);
          await step(name, async () => {
            ws.send(data, { binary });
            await expectMessage(name, data, binary);
          });
        }
      }
      for (const binary of [false, true]) {
        const name = (binary ? 'binary' : 'text') + '-fragmented';
        await step(name, async () => {
          const pieces = binary
            ? [makeBinary(10, 101), makeBinary(0, 102), makeBinary(70000, 103), makeBinary(3, 104)]
            : [makeText(10, 201), makeText(0, 202), makeText(70000, 203), makeText(3, 204)];
          pieces.forEach((p, i) => ws.send(p, { binary, fin: i === pieces.length - 1 }));
          await expectMessage(name, Buffer.concat(pieces), binary);
        });
      }
      await step('ping', async () => {
        const payload = Buffer.from('ping from ' + label);
        ws.ping(payload);
        const ev = await next();
        if (ev.kind !== 'pong') throw new Error('expected pong, got ' + ev.kind);
        if (!ev.data.equals(payload)) throw new Error('pong payload mismatch: ' + ev.data.toString());
      });
      await step('close', async () => {
        ws.close(4000, 'bye from ' + label);
        const ev = await next();
        if (ev.kind !== 'close') throw new Error('expected close, got ' + ev.kind);
        emit({ event: 'close', code: ev.code, reason: ev.reason });
        if (ev.code !== 4000) throw new Error('close code echoed ' + ev.code + ', want 4000');
      });
      if (opts.serverClose) await step('server-close', () => serverClose(opts, wsOpts));
      finish(true);
    } catch (e) {
      finish(false, e && e.message || e);
    }
  });
}

// The closing handshake the other way: a second connection asks the echo
// server to close with SERVER_CLOSE_CODE and SERVER_CLOSE_REASON, as the peer
// servers do on a text message "close:<code>:<reason>".
const SERVER_CLOSE_CODE = 4001;
const SERVER_CLOSE_REASON = 'server bye ✓';

function serverClose(opts, wsOpts) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(opts.url, opts.subprotocol ? [opts.subprotocol] : [], wsOpts);
    ws.on('open', () => ws.send('close:' + SERVER_CLOSE_CODE + ':' + SERVER_CLOSE_REASON));
    ws.on('message', () => reject(new Error('server-close: unexpected message')));
    ws.on('error', (err) => reject(err));
    ws.on('close', (code, reason) => {
      reason = reason.toString('utf8');
      emit({ event: 'server-close', code, reason });
      if (code !== SERVER_CLOSE_CODE || reason !== SERVER_CLOSE_REASON) {
        reject(new Error('server-close: got ' + code + ' ' + JSON.stringify(reason) +
          ', want ' + SERVER_CLOSE_CODE + ' ' + JSON.stringify(SERVER_CLOSE_REASON)));
      } else {
        resolve();
      }
    });
  });
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
    if (opts.role === 'server') return runServer(opts);
    if (opts.role === 'client') {
      if (!opts.url) throw new Error('client needs --url');
      return runClient(opts);
    }
    throw new Error('first argument must be "server" or "client"');
  } catch (e) {
    emit({ event: 'result', ok: false, error: String(e && e.message || e) });
    process.exit(2);
  }
}

main();
