-- GET /v1/rooms?city=...&limit=20 with a city drawn at random from a file of URL-encoded names (argument 1).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local cities

function init(args)
  cities = read_lines(args[1])
  seed_random()
end

function request()
  return wrk.format("GET", "/v1/rooms?city=" .. cities[math.random(#cities)] .. "&limit=20")
end
