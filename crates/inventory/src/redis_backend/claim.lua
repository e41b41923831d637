-- claim(claim_id, buyer, product, quantity, seen_price, now, deadline): every check before the
-- first write, then stock, limit, flash and the claim log change together. `now` is empty
-- (TIME decides; see `clock`); `deadline` (ms, or empty for none) refuses a claim that runs
-- after it, so a claim the node gave up on never executes later.
local cid, buyer, p = ARGV[1], ARGV[2], ARGV[3]
local qty, seen, now = tonumber(ARGV[4]), tonumber(ARGV[5]), clock(ARGV[6])
local deadline = tonumber(ARGV[7] or '')

local existing = redis.call('HGET', K_CLAIMS, cid)
if existing then
  local r = rec_parse(cid, existing)
  if r.buyer ~= buyer then return cjson.encode({ o = 'refused', reason = 'claim_id_taken' }) end
  return cjson.encode({ o = 'duplicate', rec = r, left = left_of(r.product_id) })
end
if deadline and now > deadline then return cjson.encode({ o = 'expired' }) end
if meta('status') ~= 'live' then return cjson.encode({ o = 'refused', reason = 'show_not_live' }) end
local e = entry(p)
if not e then return cjson.encode({ o = 'refused', reason = 'unknown_product' }) end
if meta('pinned') ~= p then return cjson.encode({ o = 'refused', reason = 'not_pinned' }) end
local f = flash_get()
local price, fid = e.list, nil
if f and f.product == p and applies(f, now) then price, fid = f.price, f.id end
if price ~= seen then return cjson.encode({ o = 'refused', reason = 'stale_price', current = price }) end
local held = tonumber(redis.call('HGET', K_HELD, buyer .. '|' .. p) or '0')
local limit_left = e.limit - held
if limit_left < 0 then limit_left = 0 end
if qty > limit_left then return cjson.encode({ o = 'refused', reason = 'limit_exceeded', limit_left = limit_left }) end
local left = left_of(p)
local available = left
if fid then
  local cl = cap_left(f)
  if cl ~= nil and cl < available then available = cl end
end
if qty > available then return cjson.encode({ o = 'refused', reason = 'sold_out', available = available }) end

local r = { claim_id = cid, buyer = buyer, product_id = p, quantity = qty, unit_price = price, flash_id = fid, at = now }
local stock_left = redis.call('HINCRBY', K_LEFT, p, -qty)
redis.call('HINCRBY', K_HELD, buyer .. '|' .. p, qty)
local exhausted = nil
if fid then
  local sold = redis.call('HINCRBY', K_FLASH, 'sold', qty)
  if f.cap ~= nil and sold >= f.cap then exhausted = fid end
end
redis.call('HSET', K_CLAIMS, cid, rec_text(r))
local chunk = mine_chunk(buyer, redis.call('HINCRBY', K_MINE, buyer .. '#', 1))
local ids = redis.call('HGET', K_MINE, chunk)
if ids then ids = ids .. ',' .. cid else ids = cid end
redis.call('HSET', K_MINE, chunk, ids)
local pos = redis.call('HINCRBY', K_META, 'log_len', 1) - 1
redis.call('XADD', K_LOG, '*', 'pos', n(pos), 'kind', 'claim', 'claim_id', cid, 'buyer', buyer,
  'product', p, 'quantity', n(qty), 'unit_price', n(price), 'flash_id', fid and n(fid) or '', 'at', n(now))
redis.call('HINCRBY', K_META, 'accepted', 1)
redis.call('HINCRBY', K_META, 'version', 1)
return cjson.encode({ o = 'accepted', rec = r, left = stock_left, exhausted = exhausted })
