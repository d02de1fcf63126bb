-- POST /batch with 100 items to random uids, 64-byte text each.
math.randomseed(42)
local data = string.rep("x", 64)
request = function()
  local items = {}
  for i = 1, 100 do
    items[i] = '{"uid":"u' .. math.random(0, 9999) .. '","data":"' .. data .. '"}'
  end
  return wrk.format("POST", "/batch", {["Content-Type"] = "application/json"}, "[" .. table.concat(items, ",") .. "]")
end
