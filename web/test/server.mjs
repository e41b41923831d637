// Test harness: runs the real `nightmarket serve` binary on port 0 with a fresh data directory,
// mints tokens and invites with the same binary, and stops it after. The client tests and the
// browser tests share it.
//
// NIGHTMARKET_BIN names the binary; default <repo>/target/debug/nightmarket (build it with
// `cargo build -p nightmarket`).

import { spawn, execFile } from "node:child_process";
import { mkdtemp, rm, access } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "..", "..");
export const BIN = process.env.NIGHTMARKET_BIN || join(REPO, "target", "debug", "nightmarket");

/** How long the server may take to print its listening line. */
const START_TIMEOUT_MS = 30_000;
/** How long a stopping server may take before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Variables of the caller's environment that would point the server elsewhere, and the test
 * harness's own (the server refuses NIGHTMARKET_ variables that are not configuration keys).
 */
const DROPPED = /^NIGHTMARKET_(REDIS|DATABASE|CONFIG|LISTEN|DATA_DIR|PUBLIC_URL|BIN$)/;

/**
 * Starts a server. `env` adds configuration variables (e.g. NIGHTMARKET_LIMITS_STOCK_TICK_MS).
 * @param {{env?: Record<string, string>}} [opts]
 */
export async function startServer(opts = {}) {
  try {
    await access(BIN);
  } catch {
    throw new Error(`nightmarket binary not found at ${BIN}: run \`cargo build -p nightmarket\` or set NIGHTMARKET_BIN`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), "nightmarket-web-"));
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!DROPPED.test(k)) env[k] = v;
  Object.assign(env, {
    NIGHTMARKET_LISTEN: "127.0.0.1:0",
    NIGHTMARKET_DATA_DIR: dataDir,
    NIGHTMARKET_LOG: process.env.NIGHTMARKET_TEST_LOG || "warn",
    ...(opts.env || {}),
  });
  const child = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
    if (process.env.NIGHTMARKET_TEST_LOG) process.stderr.write(d);
  });
  const addr = await new Promise((resolveAddr, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`server did not start in ${START_TIMEOUT_MS} ms:\n${stderr}`)), START_TIMEOUT_MS);
    child.stdout.on("data", (d) => {
      out += d;
      const m = /nightmarket listening on (\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolveAddr(m[1]); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${stderr}`)); });
  });
  const url = `http://${addr}`;

  const cli = async (...args) => (await run(BIN, args, { env })).stdout.trim();
  return {
    url,
    addr,
    dataDir,
    env,
    /** A signed token from `nightmarket token`. */
    token: (role, subject) => cli("token", "--role", role, "--subject", subject),
    /** A one-time sign-in link from `nightmarket invite` (needs the sign-in endpoints). */
    invite: async (role, subject) => {
      const out = await cli("invite", "--role", role, "--subject", subject, "--base-url", url);
      const m = /(https?:\/\/\S*#code=\S+)/.exec(out);
      if (!m) throw new Error(`no sign-in link in: ${out}`);
      return m[1];
    },
    /** Whether the binary knows a subcommand (e.g. "invite"). */
    hasCommand: async (name) => {
      try { await run(BIN, [name, "--help"], { env }); return true; } catch { return false; }
    },
    stderr: () => stderr,
    async stop() {
      if (child.exitCode == null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Two products with valid OCOP documents, for seeding. */
export function productBody(sellerId, name, listPrice, stars = 4) {
  return {
    seller_id: sellerId, name, group: "food", stars, district: "Ba Vì", commune: "Tản Lĩnh",
    producer: "HTX Mật ong Ba Vì", list_price: listPrice,
    origin_document: "TXNG-BV-000123", quality_label: "TCCS 01:2024/MOBV",
    documents: [
      { kind: "ocop_certificate", reference: "OCOP-HN-2024-0412", valid_from: "2024-01-01", valid_until: "2099-12-31" },
      { kind: "origin_proof", reference: "TXNG-BV-000123", valid_from: "2024-01-01", valid_until: "2099-12-31" },
      { kind: "quality_label", reference: "TCCS 01:2024/MOBV", valid_from: "2024-01-01", valid_until: "2099-12-31" },
    ],
  };
}

/** Polls `fn` until it returns a truthy value or `ms` pass. */
export async function until(fn, ms = 5000, what = "condition") {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}
