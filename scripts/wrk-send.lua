-- POST /send/u<random> with a 64-byte text body, keep-alive.
math.randomseed(42)
local body = string.rep("x", 64)
request = function()
  return wrk.format("POST", "/send/u" .. math.random(0, 9999), {["Content-Type"] = "text/plain"}, body)
end
