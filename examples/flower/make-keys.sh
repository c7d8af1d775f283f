#!/bin/sh
# The example federation's key ceremony on one machine (a simulation, or SuperNodes sharing a host):
# `secagg keys` makes one identity per partition, DIRECTORY/hospital-<partition-id>.key (0600, never
# overwritten; its public key in .pub), and the federation's trusted list, DIRECTORY/federation.keys.
# The example's nodes find them with node config key-dir="DIRECTORY" or $SECAGG_FLOWER_KEY_DIR.
# Across hospitals each runs `secagg keys new` on its own node instead, and the public keys travel
# out of band (docs/integrations.md, "Provisioning identities"); never let the server make them.
#
# Usage: sh examples/flower/make-keys.sh DIRECTORY NODES
set -eu
usage="usage: sh examples/flower/make-keys.sh DIRECTORY NODES"
directory=${1:?$usage}
nodes=${2:?$usage}
case $nodes in
  '' | *[!0-9]*) echo "$usage (NODES: a number, got '$nodes')" >&2; exit 2 ;;
esac
if [ "$nodes" -lt 2 ]; then echo "$usage (a federation needs at least 2 nodes)" >&2; exit 2; fi
umask 077
mkdir -p "$directory"
chmod 700 "$directory"
set --  # the public-key files, one argument each
partition=0
while [ "$partition" -lt "$nodes" ]; do
  secagg keys new "$directory/hospital-$partition.key" >/dev/null
  set -- "$@" "$directory/hospital-$partition.key.pub"
  partition=$((partition + 1))
done
secagg keys trust "$directory/federation.keys" "$@"
partition=0
while [ "$partition" -lt "$nodes" ]; do
  secagg keys check "$directory/federation.keys" --identity "$directory/hospital-$partition.key" >/dev/null
  partition=$((partition + 1))
done
echo "identity keys: $directory/hospital-0.key .. hospital-$((nodes - 1)).key (0600, one per partition)"
