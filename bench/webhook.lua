-- GET /auth/webhook with a bearer token, rotating over BENCH_TOKENS (nginx auth_request style).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local n = 0

function init(args)
   load_tokens()
end

function request()
   n = n + 1
   return wrk.format("GET", "/auth/webhook", {
      ["Authorization"] = "Bearer " .. tokens[n % #tokens + 1],
   })
end
