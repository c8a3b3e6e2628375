#!/bin/sh
# Idempotent installer for the real WebSocket peers used by interop tests.
# Installs chromium + python3-websockets (Debian apt) and ws@8.23.0 (npm)
# into internal/interop/node_modules. Fast no-op when already installed.
set -eu

WS_VERSION=8.23.0
HERE=$(cd "$(dirname "$0")" && pwd)

if command -v chromium >/dev/null 2>&1 && /usr/bin/python3 -c 'import websockets' >/dev/null 2>&1; then
	echo "install.sh: chromium and python3-websockets already present"
else
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends chromium python3-websockets
fi

have_ws=""
if [ -f "$HERE/node_modules/ws/package.json" ]; then
	have_ws=$(node -p 'require(process.argv[1]).version' "$HERE/node_modules/ws/package.json" 2>/dev/null || true)
fi
if [ "$have_ws" = "$WS_VERSION" ]; then
	echo "install.sh: ws@$WS_VERSION already present"
else
	(cd "$HERE" && npm install --no-save --no-package-lock --no-audit --no-fund "ws@$WS_VERSION")
fi

echo "install.sh: chromium: $(chromium --version 2>/dev/null || echo '?')"
echo "install.sh: python websockets: $(/usr/bin/python3 -c 'import websockets; print(websockets.__version__)')"
echo "install.sh: node $(node --version), ws $(node -p 'require(process.argv[1]).version' "$HERE/node_modules/ws/package.json")"
