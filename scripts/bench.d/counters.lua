-- wrk script: GET the public counters of a popular page, as every article view does.
local sites = { "news", "ward", "hanoi", "tech" }
local n = 0
request = function()
  n = n + 1
  local page = math.floor(1 / (math.random() ^ 1.1))
  return wrk.format("GET", string.format("/api/v1/sites/%s/counters?page=/tin-tuc/bai-%d", sites[(n % 4) + 1], page))
end
