-- GET /v1/health: no database, so it measures what the server and framework cost by themselves.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

function request()
  return wrk.format("GET", "/v1/health")
end
