#!/bin/bash
# Manual smoke test of the headless-Chromium recipe documented in README.md:
# a loopback page server serves a page whose JavaScript talks WebSocket to
# node_peer.js (echo server) and POSTs the outcome back to the page server.
#
#   ./browser_smoke.sh [--tls] [--deflate]
#
# --tls: page over https and socket over wss with a throwaway self-signed
#        certificate (needs openssl); Chromium gets --ignore-certificate-errors.
# --deflate: run the echo server with --deflate.
# Prints the echo server's JSON lines (incl. Chromium's request headers) and
# the JSON result posted by the page; exits 0 when the page reports ok.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TLS=0; DEFLATE=()
for a in "$@"; do
	case "$a" in
	--tls) TLS=1 ;;
	--deflate) DEFLATE=(--deflate) ;;
	*) echo "unknown argument $a" >&2; exit 2 ;;
	esac
done

TMP=$(mktemp -d)
CHROME_PID=""; ECHO_PID=""; PAGE_PID=""
cleanup() {
	[ -n "$CHROME_PID" ] && kill -KILL -- "-$CHROME_PID" 2>/dev/null
	exec 3>&- 4>&- 2>/dev/null
	[ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
	[ -n "$PAGE_PID" ] && kill "$PAGE_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

TLSARGS=(); SCHEME=http; WSSCHEME=ws
if [ $TLS = 1 ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || exit 1
	TLSARGS=(--tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem")
	SCHEME=https; WSSCHEME=wss
fi

wait_port() { # file -> port
	for _ in $(seq 100); do
		grep -q '"listening"' "$1" 2>/dev/null && break
		sleep 0.05
	done
	sed -n 's/.*"event":"listening","port":\([0-9]*\).*/\1/p' "$1" | head -1
}

# Echo server (stdin held open through fd 3).
mkfifo "$TMP/echo.in" "$TMP/page.in"
node "$HERE/node_peer.js" server --port 0 --log-headers "${DEFLATE[@]}" "${TLSARGS[@]}" \
	<"$TMP/echo.in" >"$TMP/echo.out" 2>&1 &
ECHO_PID=$!
exec 3>"$TMP/echo.in"
ECHO_PORT=$(wait_port "$TMP/echo.out")

# Page server: GET / -> page, POST /result -> prints {"event":"result",...}.
cat >"$TMP/page_server.js" <<'EOF'
const fs = require('fs');
const [certFile, keyFile] = process.argv.slice(2);
const page = `<!doctype html><meta charset="utf-8"><title>duplex smoke</title><script>
(async () => {
  const post = (o) => fetch('/result', {method: 'POST', body: JSON.stringify(o)});
  try {
    const url = new URLSearchParams(location.search).get('ws');
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const msgs = [];
    let wake = null;
    ws.onmessage = (e) => { msgs.push(e.data); if (wake) wake(); };
    const next = () => new Promise((r) => { if (msgs.length) r(msgs.shift()); else wake = () => { wake = null; r(msgs.shift()); }; });
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error('ws error')); });
    const text = 'héllo wörld 😀 中文 ' + 'x'.repeat(70000);
    ws.send(text);
    if ((await next()) !== text) throw new Error('text echo mismatch');
    const bin = new Uint8Array(100000); for (let i = 0; i < bin.length; i++) bin[i] = (i * 31 + 7) & 255;
    ws.send(bin);
    const got = new Uint8Array(await next());
    if (got.length !== bin.length || got.some((v, i) => v !== bin[i])) throw new Error('binary echo mismatch');
    const closed = new Promise((r) => { ws.onclose = r; });
    ws.close(4000, 'bye from chromium');
    const ce = await closed;
    await post({ok: true, extensions: ws.extensions, protocol: ws.protocol, closeCode: ce.code, closeReason: ce.reason, wasClean: ce.wasClean, userAgent: navigator.userAgent});
  } catch (e) {
    await post({ok: false, error: String(e)});
  }
})();
</script>`;
const handler = (req, res) => {
  if (req.method === 'POST' && req.url === '/result') {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      res.end('ok');
      process.stdout.write(JSON.stringify({event: 'result', result: JSON.parse(body)}) + '\n');
    });
    return;
  }
  if (req.url === '/favicon.ico') { res.writeHead(404); res.end(); return; }
  res.writeHead(200, {'Content-Type': 'text/html; charset=utf-8'});
  res.end(page);
};
const srv = certFile
  ? require('https').createServer({cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile)}, handler)
  : require('http').createServer(handler);
srv.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({event: 'listening', port: srv.address().port}) + '\n'));
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
EOF
if [ $TLS = 1 ]; then
	node "$TMP/page_server.js" "$TMP/cert.pem" "$TMP/key.pem" <"$TMP/page.in" >"$TMP/page.out" 2>&1 &
else
	node "$TMP/page_server.js" <"$TMP/page.in" >"$TMP/page.out" 2>&1 &
fi
PAGE_PID=$!
exec 4>"$TMP/page.in"
PAGE_PORT=$(wait_port "$TMP/page.out")

URL="$SCHEME://127.0.0.1:$PAGE_PORT/?ws=$WSSCHEME://127.0.0.1:$ECHO_PORT/chromium"
FLAGS=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic
	--no-first-run --disable-background-networking --disable-component-update --disable-sync
	--proxy-server=http://127.0.0.1:9 --user-data-dir="$TMP/profile")
[ $TLS = 1 ] && FLAGS+=(--ignore-certificate-errors)

START=$(date +%s%N)
setsid chromium "${FLAGS[@]}" "$URL" >"$TMP/chrome.log" 2>&1 &
CHROME_PID=$! # setsid => pid == pgid
OK=1
for _ in $(seq 300); do
	grep -q '"event":"result"' "$TMP/page.out" && break
	sleep 0.1
done
END=$(date +%s%N)
if grep -q '"event":"result"' "$TMP/page.out"; then
	echo "page result after $(((END - START) / 1000000)) ms:"
	grep '"event":"result"' "$TMP/page.out"
	grep -q '"ok":true' "$TMP/page.out" && OK=0
else
	echo "no result from page within 30 s; chromium log:"; tail -30 "$TMP/chrome.log"
fi
kill -KILL -- "-$CHROME_PID" 2>/dev/null
T0=$(date +%s%N); wait "$CHROME_PID" 2>/dev/null; CHROME_PID=""
echo "chromium process group killed, reaped in $((($(date +%s%N) - T0) / 1000000)) ms"
echo "echo server:"; cat "$TMP/echo.out"
exit $OK
