-- Deletes the consumers of a group that have nothing pending and have been idle for a while:
-- workers that stopped (each worker process reads under a name of its own). Checking and
-- deleting in one script matters: a consumer deleted while it holds pending entries would
-- leave them unclaimable. A live consumer that is deleted is created again by its next read.
--
-- KEYS[1]  the stream
-- ARGV     group, the calling consumer (kept), minimum idle time (ms)
-- Returns  the number of consumers deleted.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do
    f[c[i]] = c[i + 1]
  end
  if f.name ~= ARGV[2] and f.pending == 0 and f.idle >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f.name)
    removed = removed + 1
  end
end
return removed
