-- claims(then per claim: claim_id, buyer, product, quantity, seen_price, now, deadline): a batch
-- of claims on one show, decided one after another in the order given, each exactly as if it
-- ran alone: every check before its first write, then stock, limit, flash and the claim log
-- change together; a refusal or an expiry changes nothing and does not touch the others. `now`
-- is empty (TIME decides, read once: the batch is one atomic step, so every claim in it
-- executes at that instant; see `clock`); `deadline` (ms, or empty for none) refuses a claim
-- that runs after it, so a claim the node gave up on never executes later.
--
-- The hot path of the product. The reply is flat, CLAIM_REPLY values per claim, numbers as
-- integers (no JSON, no formatting of numbers into text): the node reads it without parsing
-- text. Texts written to Redis reuse the texts they came as (arguments, the lineup, the
-- flash), and what only claims change (stock left, units held, the flash's units sold) is
-- kept here as it changes, so a claim reads only what a claim before it may have written.
--
--   accepted:  1, unit_price, flash_id (0: none), at, stock_left, flash exhausted (0: no)
--   duplicate: 2, the claim's record (as in `claims`), stock_left of its product, 0, 0, 0
--   refused:   3, reason (below), detail (current price, limit left or available; -1), 0, 0, 0
--   expired:   4, 0, 0, 0, 0, 0
local ACCEPTED, DUPLICATE, REFUSED, EXPIRED = 1, 2, 3, 4
local SHOW_NOT_LIVE, UNKNOWN_PRODUCT, NOT_PINNED, STALE_PRICE, LIMIT_EXCEEDED, SOLD_OUT,
  CLAIM_ID_TAKEN = 1, 2, 3, 4, 5, 6, 7

local out = {}
local function answer(a, b, c, d, e, f)
  local k = #out
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = a, b, c, d, e, f
end
local function refuse(reason, detail) answer(REFUSED, reason, detail or -1, 0, 0, 0) end

-- TIME, once: as text (seconds, then the first three of the six microsecond digits) for the
-- records, and as a number for the checks.
local time_s, time_n
local function exec_time()
  if not time_s then
    local t = redis.call('TIME')
    local us = t[2]
    time_s = t[1] .. string.sub(string.rep('0', 6 - #us) .. us, 1, 3)
    time_n = tonumber(time_s)
  end
  return time_s, time_n
end

-- Read once: no claim changes them.
local status, pinned = meta('status'), meta('pinned')
local f = flash_get()
local entries = {}
local function entry_of(p)
  local e = entries[p]
  if e == nil then
    e = entry(p) or false
    entries[p] = e
  end
  return e
end
-- Stock left per product, as claims here take it.
local lefts = {}
local function left(p)
  local l = lefts[p]
  if l == nil then
    l = left_of(p)
    lefts[p] = l
  end
  return l
end
-- The claim log's next position, as text: read once, then counted up as text (see `succ`).
local pos_s = nil
local taken = 0

-- The decimal text of `s + 1` for a whole number `s` given as text, without formatting a
-- number: the last digit goes up by one; only a carry (one time in ten) formats.
local function succ(s)
  local last = string.byte(s, -1)
  if last < 57 then return string.sub(s, 1, -2) .. string.char(last + 1) end
  return n(tonumber(s) + 1)
end

for i = 1, #ARGV, 7 do
  local cid, buyer, p, qty_s, seen_s = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  -- A call of one claim may leave out its trailing empty arguments.
  local now_s, now = ARGV[i + 5] or '', nil
  if now_s == '' then now_s, now = exec_time() else now = tonumber(now_s) end
  local deadline = ARGV[i + 6] or ''

  local existing = redis.call('HGET', K_CLAIMS, cid)
  local e = false
  if existing then
    local b, rp = string.match(existing, '^([^|]*)|([^|]*)|')
    if b ~= buyer then refuse(CLAIM_ID_TAKEN)
    else answer(DUPLICATE, existing, left(rp), 0, 0, 0) end
  elseif deadline ~= '' and now > tonumber(deadline) then answer(EXPIRED, 0, 0, 0, 0, 0)
  elseif status ~= 'live' then refuse(SHOW_NOT_LIVE)
  else
    e = entry_of(p)
    if not e then refuse(UNKNOWN_PRODUCT)
    elseif pinned ~= p then refuse(NOT_PINNED); e = false
    end
  end
  if e then
    local price, price_s, fid, fid_s = e.list, e.list_s, 0, ''
    local in_flash = f and f.product == p and applies(f, now)
    if in_flash then price, price_s, fid, fid_s = f.price, f.price_s, f.id, f.id_s end
    local qty = tonumber(qty_s)
    local held_key = buyer .. '|' .. p
    if tonumber(seen_s) ~= price then refuse(STALE_PRICE, price)
    else
      local limit_left = e.limit - tonumber(redis.call('HGET', K_HELD, held_key) or '0')
      if limit_left < 0 then limit_left = 0 end
      local available = left(p)
      if in_flash then
        local cl = cap_left(f)
        if cl ~= nil and cl < available then available = cl end
      end
      if qty > limit_left then refuse(LIMIT_EXCEEDED, limit_left)
      elseif qty > available then refuse(SOLD_OUT, available)
      else
        local stock_left = redis.call('HINCRBY', K_LEFT, p, '-' .. qty_s)
        lefts[p] = stock_left
        redis.call('HINCRBY', K_HELD, held_key, qty_s)
        local exhausted = 0
        if in_flash then
          f.sold = redis.call('HINCRBY', K_FLASH, 'sold', qty_s)
          if f.cap ~= nil and f.sold >= f.cap then exhausted = fid end
        end
        redis.call('HSET', K_CLAIMS, cid,
          buyer .. '|' .. p .. '|' .. qty_s .. '|' .. price_s .. '|' .. fid_s .. '|' .. now_s .. '|')
        local chunk = mine_chunk(buyer, redis.call('HINCRBY', K_MINE, buyer .. '#', '1'))
        local ids = redis.call('HGET', K_MINE, chunk)
        if ids then ids = ids .. ',' .. cid else ids = cid end
        redis.call('HSET', K_MINE, chunk, ids)
        if not pos_s then pos_s = meta('log_len') end
        redis.call('XADD', K_LOG, '*', 'pos', pos_s, 'kind', 'claim', 'claim_id', cid,
          'buyer', buyer, 'product', p, 'quantity', qty_s, 'unit_price', price_s, 'flash_id', fid_s,
          'at', now_s)
        taken = taken + 1
        pos_s = succ(pos_s)
        answer(ACCEPTED, price, fid, now, stock_left, exhausted)
      end
    end
  end
end

-- The show's counters move once for the whole batch.
if taken > 0 then
  redis.call('HINCRBY', K_META, 'log_len', taken)
  redis.call('HINCRBY', K_META, 'accepted', taken)
  redis.call('HINCRBY', K_META, 'version', taken)
end
return out
