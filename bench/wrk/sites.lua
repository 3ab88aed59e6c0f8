-- Virtual hosts: request k carries `Host: site{(k - 1) mod N + 1}.test`, so consecutive
-- requests on a connection go to different sites and every site is hit equally.
-- N is the first argument after the URL (`wrk ... -s sites.lua URL -- N`, 100 when
-- absent); the path is the URL's. Every request is formatted once in init, so a request
-- costs wrk one table lookup whatever N is: the one-site load (N = 1) and the 100-site
-- load put the same work on the client.
local reqs = {}
local n = 0

init = function(args)
  local count = tonumber(args[1] or "100") or 100
  for i = 1, count do
    reqs[i] = wrk.format(nil, nil, { ["Host"] = string.format("site%d.test", i) })
  end
end

request = function()
  n = n + 1
  if n > #reqs then
    n = 1
  end
  return reqs[n]
end
