-- Shared by every Nightmarket script. All keys carry the show's hash tag, so a show lives in
-- one Redis Cluster slot and every script on it is atomic.
local K_META, K_LINEUP, K_LEFT, K_HELD, K_CLAIMS, K_FLASH, K_LOG, K_EVENTS, K_MINE, K_PRODUCTS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
-- The waitlists (see waitlist_lib.lua).
local K_WAIT, K_WAITENT, K_WAITNEWS = KEYS[11], KEYS[12], KEYS[13]

-- Integers as text without exponent: Lua numbers are doubles.
local function n(x) return string.format('%.0f', x) end

local function meta(field) return redis.call('HGET', K_META, field) end

-- The time a step is decided at: Redis's own clock as the script runs (TIME; Redis 7 replicates
-- scripts by their effects, so reading it is allowed), never a time taken before the request
-- waited in a queue or a socket. A non-empty argument is a scripted time (tests only).
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function flash_get()
  local raw = redis.call('HGETALL', K_FLASH)
  if #raw == 0 then return nil end
  local t = {}
  for i = 1, #raw, 2 do t[raw[i]] = raw[i + 1] end
  local cap = nil
  if t.cap ~= '' then cap = tonumber(t.cap) end
  -- The id and price also as the texts they are stored as, for records written from them.
  return { id = tonumber(t.id), product = t.product, price = tonumber(t.price),
           list = tonumber(t.list), starts = tonumber(t.starts), ends = tonumber(t.ends),
           cap = cap, sold = tonumber(t.sold), id_s = t.id, price_s = t.price }
end

local function cap_left(f)
  if f.cap == nil then return nil end
  local l = f.cap - f.sold
  if l < 0 then l = 0 end
  return l
end

local function applies(f, now)
  return f.starts <= now and now < f.ends and cap_left(f) ~= 0
end

-- A lineup entry: allotted, per-buyer limit, list price (also as its text, `list_s`).
local function entry(product)
  local raw = redis.call('HGET', K_LINEUP, product)
  if not raw then return nil end
  local a, l, p = string.match(raw, '^(%d+):(%d+):(%d+)$')
  return { allotted = tonumber(a), limit = tonumber(l), list = tonumber(p), list_s = p }
end

-- Claim records: buyer|product|quantity|unit_price|flash_id|at|cancelled_at
local function rec_parse(cid, raw)
  local b, p, q, pr, f, at, c = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  local r = { claim_id = cid, buyer = b, product_id = p, quantity = tonumber(q),
              unit_price = tonumber(pr), at = tonumber(at) }
  if f ~= '' then r.flash_id = tonumber(f) end
  if c ~= '' then r.cancelled_at = tonumber(c) end
  return r
end

local function rec_text(r)
  local f, c = '', ''
  if r.flash_id then f = n(r.flash_id) end
  if r.cancelled_at then c = n(r.cancelled_at) end
  return r.buyer .. '|' .. r.product_id .. '|' .. n(r.quantity) .. '|' .. n(r.unit_price) .. '|' .. f .. '|' .. n(r.at) .. '|' .. c
end

local function left_of(product) return tonumber(redis.call('HGET', K_LEFT, product) or '0') end

-- A buyer's claim ids, comma-separated in `mine` fields of at most MINE_CHUNK ids each:
-- `<buyer>#` counts them, `<buyer>#<k>` holds the k-th chunk. Redis hashes every byte of every
-- string a script handles, so one list per buyer, read and rewritten on each claim, made a
-- buyer's next claim dearer with every claim made (the 500th hashed some 37 KB); a chunk
-- bounds it. ('#' is outside the id alphabet, so these fields never meet a buyer id.)
local MINE_CHUNK = 32

-- The field the buyer's `count`-th claim id goes to. The chunk numbers' texts are kept for the
-- script's run: most claims of a batch land in chunk 0, and each text is formatted once.
local CHUNK_TEXT = {}
local function mine_chunk(buyer, count)
  local k = math.floor((count - 1) / MINE_CHUNK)
  local text = CHUNK_TEXT[k]
  if not text then
    text = n(k)
    CHUNK_TEXT[k] = text
  end
  return buyer .. '#' .. text
end

-- The buyer's claim ids, oldest first. Shows opened before the chunks kept one list in the
-- field named by the buyer id alone; it comes first.
local function mine_ids(buyer)
  local ids = {}
  local function add(list)
    if list then
      for cid in string.gmatch(list, '[^,]+') do ids[#ids + 1] = cid end
    end
  end
  add(redis.call('HGET', K_MINE, buyer))
  local count = tonumber(redis.call('HGET', K_MINE, buyer .. '#') or '0')
  if count > 0 then
    for k = 0, math.floor((count - 1) / MINE_CHUNK) do
      add(redis.call('HGET', K_MINE, buyer .. '#' .. n(k)))
    end
  end
  return ids
end
