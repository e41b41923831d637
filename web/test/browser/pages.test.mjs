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

test("the operator records an exception and a webhook; bad input is refused in plain words", async () => {
  const op = new Api({ baseUrl: srv.url, token: await srv.token("operator", "office") });
  await op.createMarket({ name: "Chợ đêm thứ Sáu", weekdays: ["friday"], start_time: "20:30", duration_minutes: 150, first_date: "2099-01-02" });
  const p = await person(browser, { width: 1280, height: 900 });
  const page = p.page;
  try {
    await page.goto(await srv.invite("operator", "office"));
    await page.waitForURL(/\/operator/);
    // One market: its calendar opens by itself.
    const ex = page.locator("form", { has: page.getByRole("heading", { name: "Thêm ngoại lệ" }) });
    await ex.getByRole("button", { name: "Thêm ngoại lệ" }).click();
    await ex.getByText("Hãy chọn đêm chợ.").waitFor();
    await ex.getByLabel("Đêm chợ").fill("2099-01-09");
    await ex.getByLabel("Lý do").fill("Tết Nguyên Đán");
    await ex.getByRole("button", { name: "Thêm ngoại lệ" }).click();
    await page.locator("li", { hasText: "Tết Nguyên Đán" }).waitFor();
    await page.locator("[data-night='2099-01-09']").getByText("Nghỉ").first().waitFor();
    // A date that is not one of the market's nights: the server's refusal, in plain words.
    const ex2 = page.locator("form", { has: page.getByRole("heading", { name: "Thêm ngoại lệ" }) });
    await ex2.getByLabel("Đêm chợ").fill("2099-01-10");
    await ex2.getByLabel("Lý do").fill("Nhầm ngày");
    await ex2.getByRole("button", { name: "Thêm ngoại lệ" }).click();
    await ex2.getByText("Thông tin chưa hợp lệ").waitFor();

    await page.goto(`${srv.url}/operator#webhooks`);
    const wh = page.locator("form", { has: page.getByRole("heading", { name: "Thêm webhook" }) });
    const urlField = wh.getByLabel("Địa chỉ nhận (https:// hoặc http://)");
    await urlField.fill("ftp://example");
    await wh.getByRole("button", { name: "Thêm webhook" }).click();
    await wh.getByText("Địa chỉ phải bắt đầu bằng https:// hoặc http://").waitFor();
    // A receiver inside the server's own network is refused, in plain words.
    await urlField.fill("http://127.0.0.1:9/hooks");
    await wh.getByRole("button", { name: "Thêm webhook" }).click();
    await wh.getByText("Máy chủ không gửi webhook vào mạng nội bộ").waitFor();
    await urlField.fill("https://hooks.example.vn/nightmarket");
    await wh.getByRole("button", { name: "Thêm webhook" }).click();
    await wh.getByText("Khoá ký (chỉ hiện một lần): whsec_").waitFor();
    await page.goto(`${srv.url}/operator#sellers`);
    await page.goto(`${srv.url}/operator#webhooks`);
    await page.locator("li", { hasText: "https://hooks.example.vn/nightmarket" }).getByRole("button", { name: "Lần gửi" }).click();
    await page.getByText("Chưa có lần gửi nào.").or(page.locator("table")).first().waitFor();
    assert.deepEqual(p.errors, []);
  } finally {
    await p.context.close();
  }
});
