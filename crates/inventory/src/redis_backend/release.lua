-- release(keep_ms): settlement has recorded the show; every key of it expires in keep_ms.
-- Refused while the show is not closed: its claim log is not complete yet. A show whose keys
-- are already gone has nothing left to release.
local status = redis.call('HGET', K_META, 'status')
if status and status ~= 'closed' then return cjson.encode({ err = status }) end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return '{}'
