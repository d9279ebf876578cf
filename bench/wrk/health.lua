-- GET /v1/health (or the path in argument 1): no database, so it measures what the server and
-- framework cost by themselves.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local path = "/v1/health"

function init(args)
  path = args[1] or path
end

function request()
  return wrk.format("GET", path)
end
