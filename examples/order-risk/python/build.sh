#!/bin/sh
# Builds order_risk.wasm from app.py with componentize-py 0.25.1, the SDK and the contract of
# this checkout.
set -e
cd "$(dirname "$0")"
sdk=../../../sdk
componentize-py -d "$sdk/wit" -w plugboard:connector/connector-with-hints componentize \
  -p . -p "$sdk/python" app -o order_risk.wasm
echo "built order_risk.wasm"
