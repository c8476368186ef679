-- wrk script: POSTs one signed Shopify webhook per request to /hooks/shop.
-- The body and its signature are computed by run.sh and passed in the environment. Each request
-- carries a delivery id of its own, a random UUID in `X-Shopify-Webhook-Id` as Shopify sends:
-- plugboard looks every one up among the ids it stored before running the connector, and
-- stores it with the events. PLUGBOARD_LOAD_DELIVERY_IDS=0 sends none (the load of earlier
-- sessions' figures). Written for wrk's LuaJIT: math.random's bounds are doubles there (in
-- Lua 5.1 they are C ints, and 0xffffffff would not fit).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Shopify-Topic"] = "orders/create"
wrk.headers["X-Shopify-Hmac-SHA256"] = os.getenv("SIGNATURE")

-- Each thread draws from its own seed: its number, the time and the CPU clock.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6) + thread_number * 7919)
end

if os.getenv("PLUGBOARD_LOAD_DELIVERY_IDS") ~= "0" then
  function request()
    wrk.headers["X-Shopify-Webhook-Id"] = string.format("%08x-%04x-4%03x-%04x-%08x%04x",
      math.random(0, 0xffffffff), math.random(0, 0xffff), math.random(0, 0xfff),
      math.random(0x8000, 0xbfff), math.random(0, 0xffffffff), math.random(0, 0xffff))
    return wrk.format()
  end
end
