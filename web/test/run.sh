#!/bin/sh
# Runs the protocol client's tests and the browser tests with node's test runner.
# Installs nothing: `npm ci` in web/ brings playwright-core, `apt-get install chromium` the
# browser, and `cargo build -p nightmarket` the server binary (NIGHTMARKET_BIN overrides it).
set -eu
cd "$(dirname "$0")/.."
# Node 20 has WebSocket behind a flag; Node 22 has it by default and accepts the flag.
exec node --experimental-websocket --test --test-concurrency=1 --test-force-exit \
  client/test/*.test.mjs test/*.test.mjs test/browser/*.test.mjs
