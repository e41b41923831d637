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

-- The returned units go to the product's waitlist first, in this same step, by the rules of
-- ShowBook::promote: per entry, head first, while units are available, skip (remove) when the
-- price rose or the limit has no room, pass over (keep) when the quantity does not fit, else
-- promote into an ordinary claim with the entry's own id. A promotion that uses up the flash
-- cap ends the flash price: every entry is judged again from the head.
local p, outcomes = r.product_id, {}
if e then
  local members = redis.call('ZRANGEBYLEX', K_WAIT, wait_lo(p), wait_hi(p))
  local i = 1
  while i <= #members do
    local fl = flash_get()
    local price, fid = e.list, nil
    if fl and fl.product == p and applies(fl, now) then price, fid = fl.price, fl.id end
    local available = left_of(p)
    if fid then
      local cl = cap_left(fl)
      if cl ~= nil and cl < available then available = cl end
    end
    if available <= 0 then break end
    local w = wait_get(p, string.match(members[i], '^[^|]*|%d+|(.*)$'))
    local wid = w and (PROMOTED_PREFIX .. n(w.number))
    local wheld = w and tonumber(redis.call('HGET', K_HELD, w.buyer .. '|' .. p) or '0')
    if not w then
      i = i + 1
    elseif price > w.price or wheld + w.quantity > e.limit then
      local reason = 'limit_exceeded'
      if price > w.price then reason = 'price_rose' end
      wait_remove(w)
      table.remove(members, i)
      outcomes[#outcomes + 1] = { outcome = 'skipped', entry = w, reason = reason }
    elseif w.quantity > available or redis.call('HEXISTS', K_CLAIMS, wid) == 1 then
      i = i + 1
    else
      wait_remove(w)
      table.remove(members, i)
      local pr = { claim_id = wid, buyer = w.buyer, product_id = p, quantity = w.quantity,
                   unit_price = price, flash_id = fid, at = now }
      redis.call('HINCRBY', K_LEFT, p, -w.quantity)
      redis.call('HINCRBY', K_HELD, w.buyer .. '|' .. p, w.quantity)
      local exhausted = nil
      if fid then
        local sold = redis.call('HINCRBY', K_FLASH, 'sold', w.quantity)
        if fl.cap ~= nil and sold >= fl.cap then exhausted = fid end
      end
      redis.call('HSET', K_CLAIMS, wid, rec_text(pr))
      local chunk = mine_chunk(w.buyer, redis.call('HINCRBY', K_MINE, w.buyer .. '#', 1))
      local ids = redis.call('HGET', K_MINE, chunk)
      if ids then ids = ids .. ',' .. wid else ids = wid end
      redis.call('HSET', K_MINE, chunk, ids)
      local ppos = redis.call('HINCRBY', K_META, 'log_len', 1) - 1
      redis.call('XADD', K_LOG, '*', 'pos', n(ppos), 'kind', 'claim', 'claim_id', wid, 'buyer', w.buyer,
        'product', p, 'quantity', n(w.quantity), 'unit_price', n(price), 'flash_id', fid and n(fid) or '', 'at', n(now))
      redis.call('HINCRBY', K_META, 'accepted', 1)
      redis.call('HINCRBY', K_META, 'version', 1)
      outcomes[#outcomes + 1] = { outcome = 'promoted', entry = w, record = pr, flash_exhausted = exhausted }
      if exhausted then i = 1 end
    end
  end
  for _, o in ipairs(outcomes) do
    redis.call('LPUSH', K_WAITNEWS, cjson.encode({ pos = pos, outcome = o }))
  end
  if #outcomes > 0 then redis.call('LTRIM', K_WAITNEWS, 0, WAIT_NEWS - 1) end
end
return cjson.encode({ o = 'cancelled', rec = r, left = left_of(p), wait = outcomes })
