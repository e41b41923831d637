-- waitlist(op, buyer, product, quantity, now, max): `join` puts the buyer on a sold-out
-- product's waitlist (`now` empty: TIME decides, see `clock`), `leave` takes it off one product's list, or off every list of the show
-- when `product` is empty. The rules of ShowBook::waitlist_join, checked before any write.
local op, buyer, p, qty, now, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), clock(ARGV[5]), tonumber(ARGV[6])

if op == 'leave' then
  local products = {}
  if p ~= '' then
    if not entry(p) then return cjson.encode({ o = 'unknown_product' }) end
    products[1] = p
  elseif meta('order') then
    for product in string.gmatch(meta('order'), '[^,]+') do products[#products + 1] = product end
  end
  local gone = {}
  for _, product in ipairs(products) do
    local w = wait_get(product, buyer)
    if w then
      wait_remove(w)
      gone[#gone + 1] = w
    end
  end
  return cjson.encode({ o = 'left', gone = gone })
end

if meta('status') ~= 'live' then return cjson.encode({ o = 'refused', reason = 'show_not_live' }) end
local e = entry(p)
if not e then return cjson.encode({ o = 'refused', reason = 'unknown_product' }) end
local w = wait_get(p, buyer)
if w then return cjson.encode({ o = 'already', entry = w, position = wait_position(w) }) end
if left_of(p) > 0 then return cjson.encode({ o = 'refused', reason = 'not_sold_out' }) end
local held = tonumber(redis.call('HGET', K_HELD, buyer .. '|' .. p) or '0')
if held + qty > e.limit then return cjson.encode({ o = 'refused', reason = 'limit_exceeded' }) end
if redis.call('ZLEXCOUNT', K_WAIT, wait_lo(p), wait_hi(p)) >= max then
  return cjson.encode({ o = 'refused', reason = 'waitlist_full' })
end
local price = e.list
local f = flash_get()
if f and f.product == p and applies(f, now) then price = f.price end
local number = redis.call('HINCRBY', K_META, 'wait_next', 1)
w = { number = number, buyer = buyer, product_id = p, quantity = qty, price = price, at = now }
redis.call('HSET', K_WAITENT, p .. '|' .. buyer, n(number) .. '|' .. n(qty) .. '|' .. n(price) .. '|' .. n(now))
redis.call('ZADD', K_WAIT, 0, wait_member(p, number, buyer))
return cjson.encode({ o = 'joined', entry = w, position = wait_position(w) })
