-- claim_log(start, count): at most `count` entries of the claim log from stream id `start`
-- (inclusive; '-' for the first), for the order service. A cancellation carries the cancelled
-- claim's own time in `claimed_at`; entries written before it did take it from the claim. An
-- unknown show (never opened, or released and expired) answers `known = false`.
local start, count = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', K_META) == 0 then return '{"known":false}' end
local out = {}
if count > 0 then
  for _, e in ipairs(redis.call('XRANGE', K_LOG, start, '+', 'COUNT', count)) do
    local t = { id = e[1] }
    local kv = e[2]
    for j = 1, #kv, 2 do t[kv[j]] = kv[j + 1] end
    if t.kind == 'cancel' and not t.claimed_at then
      local raw = redis.call('HGET', K_CLAIMS, t.claim_id)
      if raw then t.claimed_at = n(rec_parse(t.claim_id, raw).at) end
    end
    out[#out + 1] = t
  end
end
return cjson.encode({ known = true, entries = out })
