#!/usr/bin/env bash
# codegen-check.sh SHARED — regenerates the Kafka codec from SHARED/kafka-protocol/messages into
# a temporary folder and fails if it differs from the committed src/kafka/gen.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 tools/kafka_codegen.py "$shared/kafka-protocol/messages" "$tmp"
if diff -r -q src/kafka/gen "$tmp"; then
    echo "1 passed, 0 failed"
    echo "codec is up to date with $shared/kafka-protocol/messages"
else
    echo "src/kafka/gen differs from a fresh generation: run 'make codegen' and commit the result"
    diff -r src/kafka/gen "$tmp" | head -50
    exit 1
fi
