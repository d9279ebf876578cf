-- POST /v1/rooms with a url no other request of any run uses: argument 1 is the API key,
-- argument 2 a prefix unique to this run and target; the thread number and a counter follow it.

dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")

local headers
local prefix
local counter = 0

local template = '{"name": "Bench room %d", "description": "A bright room in a shared flat, close to the ' ..
  'station, with a desk and a wardrobe.", "price": %d, "recurrency": "monthly", "provider": "bench", ' ..
  '"url": "https://bench.example.com/%s/%d/%d", "monthly_price": %d, "property_size": "14 m²", ' ..
  '"coordinates": {"lat": 52.4986, "lon": 13.4182}, "area": {"name": "Kreuzberg", "country": "Germany", ' ..
  '"city": "Berlin", "coordinates": {"lat": 52.4986, "lon": 13.4182}}, "is_visible": true, ' ..
  '"images": [{"url": "https://bench.example.com/images/%d.jpg"}]}'

function init(args)
  headers = {["Content-Type"] = "application/json", ["X-API-Key"] = args[1]}
  prefix = args[2]
  seed_random()
end

function request()
  counter = counter + 1
  local price = 300 + (counter % 1700)
  local body = string.format(template, counter, price, prefix, thread_id, counter, price, counter)
  return wrk.format("POST", "/v1/rooms", headers, body)
end
