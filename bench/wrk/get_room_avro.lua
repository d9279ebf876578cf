-- GET /v1/rooms/{id} as an Avro container file (argument 2 = "avro") or as JSON (only the service answers Avro),
-- with an id drawn at random from a file of existing ids (argument 1).

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local ids
local headers = {}

function init(args)
  ids = read_lines(args[1])
  if args[2] == "avro" then
    headers["Accept"] = "application/avro"
  end
  seed_random()
end

function request()
  return wrk.format("GET", "/v1/rooms/" .. ids[math.random(#ids)], headers)
end
