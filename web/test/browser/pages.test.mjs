// Every page without a session, at 360 px: what it says, the language switch (kept across a
// reload), a bad sign-in link in plain words, and joining a show with the keyboard alone.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Api, connectShow } from "../../client/nightmarket.js";
import { startServer, productBody, until } from "../server.mjs";
import { launch, person, fitsWidth, PHONE } from "../browser.mjs";

let srv, browser, showTitle, seller, vaseId;
before(async () => {
  srv = await startServer();
  browser = await launch();
  const op = new Api({ baseUrl: srv.url, token: await srv.token("operator", "office") });
  const coop = await op.createSeller({ name: "Làng gốm Bát Tràng", district: "Gia Lâm" });
  const vase = await op.createProduct({ ...productBody(coop.id, "Bình gốm men lam", 450000, 5), group: "handicrafts" });
  showTitle = "Gốm Bát Tràng đêm nay";
  const show = await op.createShow({ seller_id: coop.id, title: showTitle, lineup: [{ product_id: vase.id, stock: 10, buyer_limit: 2 }] });
  await op.goLive(show.id);
  vaseId = vase.id;
  seller = connectShow({ showId: show.id, baseUrl: srv.url, token: await srv.token("seller", show.seller_id) });
  await until(() => seller.state.connection === "open", 5000, "seller connected");
});
after(async () => {
  seller?.close();
  await browser?.close();
  await srv?.stop();
});

test("pages without a session say what to do, in Vietnamese or English, at 360 px", async () => {
  const p = await person(browser, PHONE);
  const page = p.page;
  try {
    await page.goto(`${srv.url}/seller`);
    await page.getByText("Hãy mở đường dẫn đăng nhập").waitFor();
    assert.ok(await fitsWidth(page));
    await page.goto(`${srv.url}/operator`);
    await page.getByText("đường dẫn đăng nhập của ban điều phối").waitFor();
    await page.goto(`${srv.url}/signin#code=not-a-real-code`);
    await page.getByText("Đường dẫn đăng nhập không đúng").waitFor();
    assert.equal(new URL(page.url()).hash, "", "the code is taken out of the address bar");

    await page.goto(`${srv.url}/`);
    await page.getByRole("heading", { name: "Chợ đêm hôm nay" }).waitFor();
    await page.getByRole("link", { name: showTitle }).waitFor();
    assert.ok(await fitsWidth(page));
    await page.getByLabel("Ngôn ngữ").selectOption("en");
    await page.getByRole("heading", { name: "Tonight's market" }).waitFor();
    await page.reload();
    await page.getByRole("heading", { name: "Tonight's market" }).waitFor();
    await page.getByLabel("Language").selectOption("vi");
    await page.getByRole("heading", { name: "Chợ đêm hôm nay" }).waitFor();
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});

test("a viewer joins and claims with the keyboard alone", async () => {
  const p = await person(browser, PHONE);
  const page = p.page;
  try {
    await page.goto(`${srv.url}/`);
    // Tab to the show's link and open it.
    const link = page.getByRole("link", { name: showTitle });
    for (let i = 0; i < 10 && !(await link.evaluate((el) => el === document.activeElement)); i++) await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.getByLabel("Tên hiển thị của bạn").waitFor();
    // The name field has the focus; Enter submits.
    await page.keyboard.type("Hoa");
    await page.keyboard.press("Enter");
    await page.getByText("Người bán đang chuẩn bị").waitFor();
    await seller.pin(vaseId);
    await page.getByTestId("buy").waitFor();
    // Tab to the quantity, type it, Tab to "Mua ngay", Enter.
    for (let i = 0; i < 20 && !(await page.evaluate(() => document.activeElement?.id === "qty")); i++) await page.keyboard.press("Tab");
    await page.keyboard.press("Control+A");
    await page.keyboard.type("2");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "buy");
    await page.keyboard.press("Enter");
    await page.getByText("Đã giữ hàng: 2 × Bình gốm men lam").waitFor();
    assert.ok(await fitsWidth(page));
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});
