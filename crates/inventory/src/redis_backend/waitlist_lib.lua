-- Waitlists, for the scripts that read or change them (waitlist, cancel, read). One sorted set
-- `wait` holds every entry of the show as `<product>|<number, 16 digits>|<buyer>`, all with
-- score 0: one product's entries are then one lexical range, in join order, and a position is a
-- ZLEXCOUNT. `waitent` maps `<product>|<buyer>` to `<number>|<quantity>|<price>|<at>`, so a
-- buyer's entry is found without a scan. ('|' and '~' are outside the id alphabet, and every id
-- character sorts below '|'.) `waitnews` is a list of the newest promotions and skips (JSON,
-- newest first, at most WAIT_NEWS) for the nodes' ticks.
local WAIT_NEWS = 64
-- The id of a promotion's claim is this and the entry's number (book::PROMOTED_CLAIM_PREFIX).
local PROMOTED_PREFIX = 'waitlist-'

local function wait_member(p, number, buyer)
  return p .. '|' .. string.format('%016.0f', number) .. '|' .. buyer
end

local function wait_lo(p) return '[' .. p .. '|' end
local function wait_hi(p) return '(' .. p .. '|~' end

local function wait_get(p, buyer)
  local raw = redis.call('HGET', K_WAITENT, p .. '|' .. buyer)
  if not raw then return nil end
  local num, q, pr, at = string.match(raw, '^(%d+)|(%d+)|(%d+)|(%-?%d+)$')
  return { number = tonumber(num), buyer = buyer, product_id = p, quantity = tonumber(q),
           price = tonumber(pr), at = tonumber(at) }
end

local function wait_position(w)
  return redis.call('ZLEXCOUNT', K_WAIT, wait_lo(w.product_id),
    '[' .. wait_member(w.product_id, w.number, w.buyer))
end

local function wait_remove(w)
  redis.call('ZREM', K_WAIT, wait_member(w.product_id, w.number, w.buyer))
  redis.call('HDEL', K_WAITENT, w.product_id .. '|' .. w.buyer)
end

-- A buyer's own part of a view (read.lua, mine.lua): its claim records and its places on the
-- waitlists of `order` (the lineup's products, comma-separated), in lineup order.
local function buyer_part(buyer, order)
  local mine, waiting = {}, {}
  if buyer == '' then return mine, waiting end
  for _, cid in ipairs(mine_ids(buyer)) do
    mine[#mine + 1] = rec_parse(cid, redis.call('HGET', K_CLAIMS, cid))
  end
  for product in string.gmatch(order, '[^,]+') do
    local w = wait_get(product, buyer)
    if w then waiting[#waiting + 1] = { entry = w, position = wait_position(w) } end
  end
  return mine, waiting
end
