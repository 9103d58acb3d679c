-- POST /graphql `{ me { id username roles } }` with a bearer token, rotating over BENCH_TOKENS.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local body = '{"query":"{ me { id username roles } }"}'
local n = 0

function init(args)
   load_tokens()
end

function request()
   n = n + 1
   return wrk.format("POST", "/graphql", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. tokens[n % #tokens + 1],
   }, body)
end
