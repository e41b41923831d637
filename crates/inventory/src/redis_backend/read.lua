-- read(buyer, feed_from): one consistent view of the show for snapshots and stock frames.
local buyer, feed_from = ARGV[1], tonumber(ARGV[2])
-- No keys (never opened, or released and expired): an empty answer, which reads as unknown.
if redis.call('EXISTS', K_META) == 0 then return '{}' end
local out = {}
local m = redis.call('HGETALL', K_META)
for i = 1, #m, 2 do out[m[i]] = m[i + 1] end
local left, lineup, products = {}, {}, {}
for product in string.gmatch(out.order, '[^,]+') do
  left[#left + 1] = left_of(product)
  lineup[#lineup + 1] = redis.call('HGET', K_LINEUP, product)
  if feed_from < 0 then products[#products + 1] = redis.call('HGET', K_PRODUCTS, product) end
end
out.left, out.lineup, out.products = left, lineup, products
local f = flash_get()
if f then out.flash = f end
out.mine, out.waiting = buyer_part(buyer, out.order)
local recent = {}
if feed_from >= 0 then
  local entries = redis.call('XREVRANGE', K_LOG, '+', '-', 'COUNT', 64)
  for i = #entries, 1, -1 do
    local t = {}
    local kv = entries[i][2]
    for j = 1, #kv, 2 do t[kv[j]] = kv[j + 1] end
    if t.kind == 'claim' and tonumber(t.pos) >= feed_from then
      local r = { claim_id = t.claim_id, buyer = t.buyer, product_id = t.product,
                  quantity = tonumber(t.quantity), unit_price = tonumber(t.unit_price), at = tonumber(t.at) }
      if t.flash_id ~= '' then r.flash_id = tonumber(t.flash_id) end
      recent[#recent + 1] = r
    end
  end
end
out.recent = recent
local news = {}
if feed_from >= 0 then
  local items = redis.call('LRANGE', K_WAITNEWS, 0, -1)
  for i = #items, 1, -1 do
    local item = cjson.decode(items[i])
    if item.pos >= feed_from then news[#news + 1] = item end
  end
end
out.news = news
-- The price a snapshot shows is judged on the clock claims are judged by.
out.now = clock('')
return cjson.encode(out)
