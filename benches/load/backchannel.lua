-- wrk script for track_1m.sh: backchannel authentication requests with rotating client ids.
-- Arguments (after --): requests per wrk thread, number of distinct client ids, and a
-- directory where each thread leaves a file `done.<thread>` when it has its quota.
-- Each thread stops itself once it has its quota of answers, so the total is bounded
-- (give or take the requests in flight on its connections when it stops). wrk itself runs
-- for its whole -d duration regardless, so track_1m.sh sends it SIGINT (its "stop now")
-- once every thread has left its file.

local threads = {}
local next_id = 0

function setup(thread)
    thread:set("tid", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

function init(args)
    quota = tonumber(args[1]) or 500000
    clients = tonumber(args[2]) or 300
    marker_dir = args[3]
    sent, answered, ok = 0, 0, 0
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
    sent = sent + 1
    local client = (sent * 2 + tid) % clients
    return wrk.format(nil, "/bc", nil,
        "client_id=c" .. client .. "&client_secret=x&scope=openid&login_hint=u")
end

function response(status, headers, body)
    answered = answered + 1
    if status == 200 then
        ok = ok + 1
    end
    if answered == quota then
        if marker_dir then
            local f = io.open(marker_dir .. "/done." .. tid, "w")
            if f then
                f:close()
            end
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local total_ok, total = 0, 0
    for _, t in ipairs(threads) do
        total_ok = total_ok + (t:get("ok") or 0)
        total = total + (t:get("answered") or 0)
    end
    io.write(string.format("answers counted by the script: %d, of which 200: %d\n", total, total_ok))
end
