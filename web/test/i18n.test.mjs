// The language files: the same keys in Vietnamese and English, every text the pages ask for,
// and plain words for every error code the server can send (crates/wire/src/codes.rs).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { REPO } from "./server.mjs";

const load = async (l) => JSON.parse(await readFile(join(REPO, "web/assets/i18n", `${l}.json`), "utf8"));
const flat = (d, p = "") => Object.entries(d).flatMap(([k, v]) => (v && typeof v === "object" ? flat(v, `${p}${k}.`) : [[`${p}${k}`, v]]));

test("Vietnamese and English have the same keys, none empty", async () => {
  const vi = new Map(flat(await load("vi"))), en = new Map(flat(await load("en")));
  assert.deepEqual([...vi.keys()].filter((k) => !en.has(k)), []);
  assert.deepEqual([...en.keys()].filter((k) => !vi.has(k)), []);
  for (const [k, v] of [...vi, ...en]) assert.ok(typeof v === "string" && v.trim(), `${k} is empty`);
  // Vietnamese first: the texts carry their diacritics.
  assert.match(vi.get("viewer.buy"), /Mua ngay/);
});

test("every literal key the pages use exists", async () => {
  const vi = new Map(flat(await load("vi")));
  const dir = join(REPO, "web/assets");
  const missing = [];
  for (const f of (await readdir(dir)).filter((f) => f.endsWith(".js"))) {
    const src = await readFile(join(dir, f), "utf8");
    for (const m of src.matchAll(/\bt\(\s*"([a-z_]+\.[a-z_.]+)"/g)) if (!vi.has(m[1])) missing.push(`${f}: ${m[1]}`);
  }
  assert.deepEqual(missing, []);
});

test("every server error code and admission reason has plain words", async () => {
  const codes = await readFile(join(REPO, "crates/wire/src/codes.rs"), "utf8");
  // The ErrorCode enum's `as_str` arms: `Self::SoldOut => "sold_out",`.
  const errorCodes = [...codes.matchAll(/Self::\w+ => "([a-z_]+)"/g)].map((m) => m[1])
    .filter((c) => !["restart", "message_too_big", "resync", "write_timeout", "token_expired"].includes(c));
  assert.ok(errorCodes.length >= 29, `found ${errorCodes.length} codes`);
  const contract = ["invite_unknown", "invite_used", "invite_expired", "csrf_rejected", "network", "connection_lost"];
  const reasons = ["stars_below_minimum", "document_missing", "document_not_yet_valid", "document_expired", "commitment_missing", "not_approved", "rejected"];
  for (const l of ["vi", "en"]) {
    const d = new Map(flat(await load(l)));
    for (const c of [...errorCodes, ...contract]) assert.ok(d.has(`errors.${c}`), `${l}: errors.${c}`);
    for (const r of reasons) assert.ok(d.has(`admission.${r}`), `${l}: admission.${r}`);
    for (const g of ["food", "beverages", "herbs", "handicrafts", "fabric_garments", "rural_tourism"]) assert.ok(d.has(`groups.${g}`));
    for (const s of ["scheduled", "live", "closed"]) assert.ok(d.has(`status.${s}`));
  }
});
