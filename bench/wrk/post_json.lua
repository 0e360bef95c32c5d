-- wrk script: POST JSON bodies to a path, cycling over the bodies.
-- Usage: wrk ... -s post_json.lua <base url> -- <path> <bodies file>
-- The bodies file holds one JSON document per line; each thread starts at a random line.
local requests = {}
local position = 1

function init(args)
    for line in io.lines(args[2]) do
        if line ~= "" then
            requests[#requests + 1] = wrk.format("POST", args[1], {
                ["Content-Type"] = "application/json",
            }, line)
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
