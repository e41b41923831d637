-- command(op, now, history, channel, publish, args...): a seller or operator command. Each
-- event it produces takes the show's next sequence number, is appended to the bounded event
-- history and published to the show's channel in the same step, so history, state and
-- publication never disagree. Refusals change nothing. `publish` is PUBLISH, or SPUBLISH on a
-- Redis Cluster. The channel is not a key, so it is passed in ARGV; it carries the show's hash
-- tag, so it hashes to the slot of the KEYS and Redis Cluster lets the script publish on it.
-- `now` is empty: TIME decides (see `clock`), so a flash's window is on the clock claims are
-- judged by.
local op, now, history, channel, publish = ARGV[1], clock(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local events = {}

local function emit(body)
  local seq = redis.call('HINCRBY', K_META, 'seq', 1)
  local json = '{"seq":' .. n(seq) .. ',"at":' .. n(now) .. ',"event":' .. body .. '}'
  redis.call('XADD', K_EVENTS, 'MAXLEN', n(history), n(seq) .. '-0', 'e', json)
  if channel ~= '' then redis.call(publish, channel, json) end
  events[#events + 1] = json
end

local function refuse(code, detail) return cjson.encode({ err = code, detail = detail or '' }) end

local function flash_ended(f, reason)
  emit('{"kind":"flash_ended","flash_id":' .. n(f.id) .. ',"product_id":"' .. f.product ..
    '","reason":"' .. reason .. '","list_price":' .. n(f.list) .. '}')
  redis.call('DEL', K_FLASH)
end

local function end_lapsed()
  local f = flash_get()
  if not f then return end
  if now >= f.ends then flash_ended(f, 'expired')
  elseif cap_left(f) == 0 then flash_ended(f, 'cap_reached') end
end

local status = meta('status')
-- No keys (never opened, or released and expired): nothing to command, and nothing created.
if not status then return refuse('unknown_show') end
local function require_live()
  if status ~= 'live' then return refuse('not_live', status) end
  return nil
end

if op == 'go_live' then
  if status ~= 'scheduled' then return refuse('bad_transition', status) end
  redis.call('HSET', K_META, 'status', 'live')
  emit('{"kind":"show_live"}')
elseif op == 'close' then
  if status == 'closed' then return refuse('bad_transition', status) end
  local f = flash_get()
  if f then flash_ended(f, 'show_closed') end
  local parts = {}
  for product in string.gmatch(meta('order'), '[^,]+') do
    parts[#parts + 1] = '["' .. product .. '",' .. n(left_of(product)) .. ']'
  end
  redis.call('HSET', K_META, 'status', 'closed', 'pinned', '')
  -- Nothing comes back after the close: nobody waits any more.
  redis.call('DEL', K_WAIT, K_WAITENT)
  -- The close marker ends the claim log: settlement reads up to it, and nothing follows it.
  local stock = {}
  for product in string.gmatch(meta('order'), '[^,]+') do stock[#stock + 1] = product .. ':' .. n(left_of(product)) end
  local pos = redis.call('HINCRBY', K_META, 'log_len', 1) - 1
  redis.call('XADD', K_LOG, '*', 'pos', n(pos), 'kind', 'close', 'stock', table.concat(stock, ','), 'at', n(now))
  emit('{"kind":"show_closed","final_stock":[' .. table.concat(parts, ',') .. ']}')
elseif op == 'pin' then
  local bad = require_live(); if bad then return bad end
  local p = ARGV[6]
  local e = entry(p)
  if not e then return refuse('unknown_product', p) end
  end_lapsed()
  if meta('pinned') ~= p then
    local f = flash_get()
    if f then flash_ended(f, 'unpinned') end
    redis.call('HSET', K_META, 'pinned', p)
    emit('{"kind":"pinned","product_id":"' .. p .. '","price":' .. n(e.list) .. '}')
  end
elseif op == 'unpin' then
  local bad = require_live(); if bad then return bad end
  local p = meta('pinned')
  if p == '' then return refuse('nothing_pinned') end
  end_lapsed()
  local f = flash_get()
  if f then flash_ended(f, 'unpinned') end
  redis.call('HSET', K_META, 'pinned', '')
  emit('{"kind":"unpinned","product_id":"' .. p .. '"}')
elseif op == 'start_flash' then
  local bad = require_live(); if bad then return bad end
  local p, price, duration, cap, countdown = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
  local e = entry(p)
  if not e then return refuse('unknown_product', p) end
  if meta('pinned') ~= p then return refuse('not_pinned', p) end
  if price > e.list then return refuse('price_above_list', n(e.list)) end
  end_lapsed()
  if flash_get() then return refuse('flash_active') end
  local id = redis.call('HINCRBY', K_META, 'next_flash', 1) - 1
  local starts = now + countdown * 1000
  local ends = starts + duration * 1000
  redis.call('HSET', K_FLASH, 'id', n(id), 'product', p, 'price', n(price), 'list', n(e.list),
    'starts', n(starts), 'ends', n(ends), 'cap', cap, 'sold', '0')
  local capj = 'null'
  if cap ~= '' then capj = cap end
  emit('{"kind":"flash_started","flash":{"id":' .. n(id) .. ',"product_id":"' .. p .. '","price":' ..
    n(price) .. ',"list_price":' .. n(e.list) .. ',"starts_at":' .. n(starts) .. ',"ends_at":' ..
    n(ends) .. ',"quantity_cap":' .. capj .. ',"sold":0}}')
elseif op == 'end_flash' then
  local reason, only = ARGV[6], ARGV[7]
  local f = flash_get()
  if not f then
    if only == '' then return refuse('no_flash') end
  elseif only == '' or tonumber(only) == f.id then
    flash_ended(f, reason)
  end
else
  return refuse('unknown_op', op)
end
-- Built by hand: cjson would encode an empty list as an object.
return '{"events":[' .. table.concat(events, ',') .. '],"seq":' .. meta('seq') .. '}'
