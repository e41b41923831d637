-- open(order, then per product: id, allotted, limit, list_price, product_json): creates a
-- show's keys once; opening an open show changes nothing. A claim log without its meta is a
-- released show whose keys are expiring one by one: it is not created afresh over them.
if redis.call('EXISTS', K_META, K_LOG) > 0 then return 0 end
redis.call('HSET', K_META, 'status', 'scheduled', 'seq', '0', 'pinned', '', 'next_flash', '1',
  'log_len', '0', 'accepted', '0', 'version', '0', 'order', ARGV[1])
for i = 2, #ARGV, 5 do
  local p = ARGV[i]
  redis.call('HSET', K_LINEUP, p, ARGV[i + 1] .. ':' .. ARGV[i + 2] .. ':' .. ARGV[i + 3])
  redis.call('HSET', K_LEFT, p, ARGV[i + 1])
  redis.call('HSET', K_PRODUCTS, p, ARGV[i + 4])
end
return 1
