-- bench/search_vary.lua: wrk script for bench/postgres.sh; every request is a different search:
--   GET /api/properties?city=C&min_bedrooms=B&min_price=LO&max_price=HI&sort=S&limit=20
-- C one of 8 cities, B 1..4, LO 50,000/75,000/100,000, HI 150,000..500,000 in steps of 50,000,
-- S price, -price, created_at, -created_at: 8*4*3*8*4 = 3,072 combinations, drawn uniformly.
-- Each wrk thread seeds its generator with its number, so every server sees the same sequence.
-- The same draws (and SQL) are in bench/peer_fastapi/pgbench_*.sql.
-- At the end prints the RESULT line of bench/latency.lua (p50/p90/p99/max ms, req/s, errors).
local cities = { "Ames", "Sacramento", "Elk%20Grove", "Roseville", "Citrus%20Heights", "Antelope",
                 "Rancho%20Cordova", "Lincoln" }
local sorts = { "price", "-price", "created_at", "-created_at" }

local threads, nthreads = {}, 0
function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(1000 + (tid or 0))
end

function request()
   local path = string.format(
      "/api/properties?city=%s&min_bedrooms=%d&min_price=%d&max_price=%d&sort=%s&limit=20",
      cities[math.random(#cities)], math.random(1, 4), 25000 * math.random(2, 4),
      100000 + 50000 * math.random(1, 8), sorts[math.random(#sorts)])
   return wrk.format("GET", path)
end

-- the RESULT line at the end: the done() of bench/latency.lua, beside this file
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "latency.lua")
