-- bench/zipf.lua: wrk script; GET /api/properties/{id} with ids drawn from a Zipf distribution.
--   wrk ... -s bench/zipf.lua URL -- N S SEED MULT       (defaults: 100000 1.1 1 48271)
-- Rank k (1..N) has probability proportional to 1/k^S. The CDF is precomputed in init() (per wrk
-- thread) and each request draws u = math.random() and finds its rank by binary search. Rank k is
-- id ((k-1)*MULT mod N)+1 (MULT coprime with N: a fixed permutation, so popularity is not tied to
-- insertion order / which demo row an id copies). Each thread seeds its generator with
-- SEED*1000 + thread number: a fixed seed gives the same sequence per connection every run
-- (the interleaving across connections still depends on timing).
-- At the end prints the RESULT line of bench/latency.lua.
local N, S, SEED, MULT = 100000, 1.1, 1, 48271
local cdf = {}
local nthreads = 0
local floor = math.floor
local random = math.random

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
end

function init(args)
   N = tonumber(args[1]) or N
   S = tonumber(args[2]) or S
   SEED = tonumber(args[3]) or SEED
   MULT = tonumber(args[4]) or MULT
   local sum = 0
   for k = 1, N do
      sum = sum + k ^ (-S)
      cdf[k] = sum
   end
   for k = 1, N do cdf[k] = cdf[k] / sum end
   cdf[N] = 1.0
   math.randomseed(SEED * 1000 + (tid or 0))
end

function request()
   local u = random()
   local lo, hi = 1, N
   while lo < hi do
      local mid = floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
   end
   local id = ((lo - 1) * MULT) % N + 1
   return wrk.format("GET", "/api/properties/" .. id)
end

-- the RESULT line at the end: the done() of bench/latency.lua, beside this file
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "latency.lua")
