-- bench/ids.lua: wrk script; GET /api/properties/{id} cycling over a small fixed set of ids
-- (every connection walks the list from its own offset). Ids come from the script arguments:
--   wrk ... -s bench/ids.lua URL -- 1 61 121 ...        (default: 64 ids, 1, 61, 121, ..., 3781)
-- At the end prints the same RESULT line as bench/latency.lua:
--   RESULT p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. rps=.. requests=.. non2xx=.. connect=.. read=.. write=.. timeout=..
local ids = {}
local i = 0
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("tid", nthreads)
end

function init(args)
   for _, a in ipairs(args) do
      local n = tonumber(a)
      if n then ids[#ids + 1] = n end
   end
   if #ids == 0 then
      for k = 0, 63 do ids[#ids + 1] = 1 + 60 * k end
   end
   i = ((tid or 1) * 17) % #ids
end

function request()
   i = i % #ids + 1
   return wrk.format("GET", "/api/properties/" .. ids[i])
end

-- the RESULT line at the end: the done() of bench/latency.lua, beside this file
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "latency.lua")
