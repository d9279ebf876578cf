-- GET /v1/rooms/{id} with an id drawn at random from a file of existing ids (argument 1).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local ids

function init(args)
  ids = read_lines(args[1])
  seed_random()
end

function request()
  return wrk.format("GET", "/v1/rooms/" .. ids[math.random(#ids)])
end
