#!/bin/sh
# Builds {{name}}.wasm, a plugboard component, from app.py with componentize-py {{componentize_py}}
# (pip install componentize-py=={{componentize_py}}). The SDK and the contract come from the
# plugboard checkout this plugin was made from.
set -e
cd "$(dirname "$0")"
componentize-py -d "{{sdk}}/wit" -w plugboard:connector/connector-with-hints componentize \
  -p . -p "{{sdk}}/python" app -o {{name}}.wasm
echo "built {{name}}.wasm"
