-- POST /graphql: the first page of the caller's sites (20), each with its members' usernames,
-- as the owner whose token is the first line of BENCH_TOKENS.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local body = '{"query":"{ sites(first: 20) { totalCount edges { node { id name members { role user { username } } } } } }"}'

function init(args)
   load_tokens()
   wrk.method = "POST"
   wrk.path = "/graphql"
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. tokens[1]
end

response = count_graphql_errors
