-- Acknowledges and deletes entries of a partition's events stream, with the incoming entries
-- that hold their events' JSON (an entry of wire version 3 names them in its `i` field; one
-- of version 2, a dead letter sent back, holds its JSON itself). Sent whole with EVAL, alone
-- or inside the MULTI that moves dead letters (an EVALSHA there could meet an empty script
-- cache after the dead letters were added).
--
-- KEYS[1]  the events stream, KEYS[2] the incoming stream (one cluster slot).
-- ARGV     1: the consumer group; 2: the field naming the incoming entries (`i`); 3..: the
--          events entries' ids.
-- Returns  the incoming entries deleted.

-- Whether the digits `n` are a 64-bit number.
local function u64(n)
  return #n < 20 or (#n == 20 and n <= '18446744073709551615')
end

-- Whether `id` is a stream id Redis takes (`ms-seq`, each a 64-bit number): ids written by
-- hand may be none, and XDEL would refuse the whole call for one of them.
local function stream_id(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return ms ~= nil and u64(ms) and u64(seq)
end

local deleted = 0
for i = 3, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])[1]
  if entry then
    local fields = entry[2]
    for j = 1, #fields - 1, 2 do
      if fields[j] == ARGV[2] then
        local ids = {}
        for id in string.gmatch(fields[j + 1], '%S+') do
          if stream_id(id) then
            ids[#ids + 1] = id
          end
        end
        for k = 1, #ids, 1000 do
          deleted = deleted + redis.call('XDEL', KEYS[2], unpack(ids, k, math.min(k + 999, #ids)))
        end
      end
    end
  end
end
for i = 3, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  redis.call('XDEL', KEYS[1], unpack(ARGV, i, last))
end
return deleted
