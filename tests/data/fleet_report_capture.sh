#!/usr/bin/env bash
# Regenerates tests/data/fleet_report_facts.json from the demo sandbox (demo/sandbox.sh): the CNFs are deployed,
# traffic passes, cnf.ebpf.report gathers once (the rate baseline), traffic passes again and the second gathering
# (with rates over the seconds between) is saved by cnf.ebpf.report -e cnf_report_save=...; then the CNFs and the
# sandbox are removed.
# Run as root from the repository with the environment of docs/development.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=tests/data/fleet_report_facts.json
scratch=$(mktemp -d)
trap 'ansible-playbook -i demo/inventory.yml cnf.ebpf.deploy -e cnf_state=absent >/dev/null || true;
      demo/sandbox.sh down; rm -rf "$scratch"' EXIT
demo/sandbox.sh up
ansible-playbook -i demo/inventory.yml cnf.ebpf.deploy
PYTHON="${PYTHON:-python3}" demo/sandbox.sh traffic
ansible-playbook -i demo/inventory.yml cnf.ebpf.report -e fleet_report_dest="$scratch/first"
sleep 2
PYTHON="${PYTHON:-python3}" demo/sandbox.sh traffic
ansible-playbook -i demo/inventory.yml cnf.ebpf.report -e fleet_report_dest="$scratch/second" \
  -e cnf_report_save="$PWD/$out"
echo ">> $out"
