#!/usr/bin/env bash
# The independent scapy/tshark oracle (tests/oracle/oracle.py) against the release model binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! /usr/bin/python3 -c 'import scapy' 2>/dev/null || ! command -v tshark >/dev/null; then
  echo "oracle needs Debian python3-scapy and tshark (.ci/run installs them)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  echo "skipping oracle outside CI" >&2
  exit 0
fi
cargo build --release -q -p ironlb-runtime --bin ironlb
exec /usr/bin/python3 tests/oracle/oracle.py target/release/ironlb
