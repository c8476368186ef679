-- wrk script: POSTs one signed Shopify webhook per request to /hooks/shop.
-- The body and its signature are computed by run.sh and passed in the environment.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Shopify-Topic"] = "orders/create"
wrk.headers["X-Shopify-Hmac-SHA256"] = os.getenv("SIGNATURE")
