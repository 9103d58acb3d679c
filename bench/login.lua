-- POST /graphql `login`, rotating over BENCH_LOGIN_USERS users named <BENCH_LOGIN_PREFIX><i>
-- (created by bench/bench.py with the password BENCH_PASSWORD).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local prefix = os.getenv("BENCH_LOGIN_PREFIX") or "login"
local users = tonumber(os.getenv("BENCH_LOGIN_USERS") or "4")
local password = os.getenv("BENCH_PASSWORD")
local n = 0

function init(args)
   n = thread_id or 0
end

function request()
   n = n + 1
   local body = string.format(
      '{"query":"mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",'
         .. '"variables":{"u":"%s%d","p":"%s"}}',
      prefix, n % users, password)
   return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json" }, body)
end

response = count_graphql_errors
