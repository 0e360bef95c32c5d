-- wrk script: POST to many paths, each with its own bearer token.
-- Usage: wrk ... -s post_bearer.lua <base url> -- <requests file>
-- The requests file holds one "<path> <token>" per line; each thread starts at a random
-- line and cycles through all of them, so the load spreads over users and resources.
local requests = {}
local position = 1

function init(args)
    for line in io.lines(args[1]) do
        local path, token = line:match("^(%S+)%s+(%S+)$")
        if path then
            requests[#requests + 1] = wrk.format("POST", path, {
                ["Authorization"] = "Bearer " .. token,
                ["Content-Type"] = "application/json",
            }, "{}")
        end
    end
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
    position = math.random(#requests)
end

function request()
    local next_request = requests[position]
    position = position % #requests + 1
    return next_request
end
