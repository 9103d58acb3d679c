-- GET /healthz: gatehouse's router, layers and request log with no database and no token,
-- the step between the bare-axum ceiling and the endpoints that check a session.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.method = "GET"
wrk.path = "/healthz"
