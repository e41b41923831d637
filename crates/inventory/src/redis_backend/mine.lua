-- mine(buyer): the buyer's own part of a snapshot and where the show stands (sequence, stock
-- version), for a node that keeps the rest of the snapshot itself. Reads no lineup and no product.
local buyer = ARGV[1]
-- No keys (never opened, or released and expired): an empty answer, which reads as unknown.
if redis.call('EXISTS', K_META) == 0 then return '{}' end
local m = redis.call('HMGET', K_META, 'status', 'seq', 'version', 'order')
local out = { status = m[1], seq = m[2], version = m[3], order = m[4] or '' }
out.mine, out.waiting = buyer_part(buyer, out.order)
return cjson.encode(out)
