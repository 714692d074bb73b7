-- wrk script: POST /collect page views over four sites, Zipf-like pages, many client
-- addresses (X-Forwarded-For; the bench server trusts 127.0.0.1). The requests are built
-- once in init() and replayed in turn, so wrk spends its time sending, not formatting.
local sites = { {"news", "news.example"}, {"ward", "ward.example"}, {"hanoi", "hanoi.example"}, {"tech", "tech.example"} }
local requests = {}
local n = 0
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  for i = 1, 20000 do
    local s = sites[(i % 4) + 1]
    local page = math.floor(1 / (math.random() ^ 1.1))
    local body = string.format(
      '{"t":"pageview","site":"%s","url":"https://%s/tin-tuc/bai-%d","title":"Bai viet %d","sid":"w%d","w":1280}',
      s[1], s[2], page, page, i % 5000)
    local headers = {
      ["Content-Type"] = "text/plain",
      ["Origin"] = "https://" .. s[2],
      ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
      ["X-Forwarded-For"] = string.format("198.18.%d.%d", math.random(0, 255), math.random(1, 254)),
    }
    requests[i] = wrk.format("POST", "/collect", headers, body)
  end
end
request = function()
  n = n % #requests + 1
  return requests[n]
end
