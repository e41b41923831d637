-- cancel(claim_id, buyer, now): a buyer's own claim, while live; units go back to stock. The
-- log entry carries the claim's terms and its own time (`claimed_at`), as settlement needs them.
-- `now` is empty: TIME decides (see `clock`).
local cid, buyer, now = ARGV[1], ARGV[2], clock(ARGV[3])
local raw = redis.call('HGET', K_CLAIMS, cid)
if not raw then return cjson.encode({ o = 'unknown_claim' }) end
local r = rec_parse(cid, raw)
if r.buyer ~= buyer then return cjson.encode({ o = 'unknown_claim' }) end
if r.cancelled_at then return cjson.encode({ o = 'already', rec = r, left = left_of(r.product_id) }) end
if meta('status') ~= 'live' then return cjson.encode({ o = 'show_not_live' }) end
local e = entry(r.product_id)
local left = left_of(r.product_id) + r.quantity
if e and left > e.allotted then left = e.allotted end
redis.call('HSET', K_LEFT, r.product_id, n(left))
local held = redis.call('HINCRBY', K_HELD, buyer .. '|' .. r.product_id, -r.quantity)
if held < 0 then redis.call('HSET', K_HELD, buyer .. '|' .. r.product_id, '0') end
local f = flash_get()
if f and r.flash_id and f.id == r.flash_id then
  local sold = f.sold - r.quantity
  if sold < 0 then sold = 0 end
  redis.call('HSET', K_FLASH, 'sold', n(sold))
end
r.cancelled_at = now
redis.call('HSET', K_CLAIMS, cid, rec_text(r))
local pos = redis.call('HINCRBY', K_META, 'log_len', 1) - 1
redis.call('XADD', K_LOG, '*', 'pos', n(pos), 'kind', 'cancel', 'claim_id', cid, 'buyer', buyer,
  'product', r.product_id, 'quantity', n(r.quantity), 'unit_price', n(r.unit_price),
  'flash_id', r.flash_id and n(r.flash_id) or '', 'at', n(now), 'claimed_at', n(r.at))
redis.call('HINCRBY', K_META, 'version', 1)
return cjson.encode({ o = 'cancelled', rec = r, left = left })
