-- POST /graphql `signup` with a new username per request: BENCH_SIGNUP_PREFIX, the wrk
-- thread number and a counter, so no two requests of a run collide.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local prefix = os.getenv("BENCH_SIGNUP_PREFIX") or "signup"
local password = os.getenv("BENCH_PASSWORD")
local n = 0

function request()
   n = n + 1
   local body = string.format(
      '{"query":"mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token } }",'
         .. '"variables":{"u":"%s_%d_%d","p":"%s"}}',
      prefix, thread_id or 0, n, password)
   return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json" }, body)
end

response = count_graphql_errors
